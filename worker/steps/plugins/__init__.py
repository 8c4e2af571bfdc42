"""python steps that ship with hookline, registered in pyproject under `hookline.steps`."""
