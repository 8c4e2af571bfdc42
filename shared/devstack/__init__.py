"""Local servers and demo systems for `hookline up`, the tests and the bench; never imported by a service."""
