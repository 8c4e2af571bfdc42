"""The console's dead letters: a page of them, and replaying one."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.response import Redirect, Template

from ingress.api.access import AccessDep
from ingress.api.deadletters import dead_letters, replay_letters
from ingress.console.runs import PAGE, Text
from ingress.console.session import CsrfDep
from ingress.dependencies import PoolDep, PublisherDep, SettingsDep


class DeadLetterController(Controller):
    """`/console/dead-letters`."""

    path = "/dead-letters"

    @get()
    async def dead(
        self,
        pool: PoolDep,
        access: AccessDep,
        csrf: CsrfDep,
        cursor: Text = None,
    ) -> Template:
        page = await dead_letters(pool, access, None, None, cursor=cursor or None, limit=PAGE)
        context = {"scope": access, "csrf": csrf, "letters": page.items, "next_cursor": page.next_cursor}
        return Template(template_name="dead_letters.html", context=context)

    @post("/{execution_id:str}/replay", status_code=303)
    async def replay_dead(
        self,
        pool: PoolDep,
        publisher: PublisherDep,
        settings: SettingsDep,
        access: AccessDep,
        execution_id: str,
    ) -> Redirect:
        await replay_letters(pool, publisher, settings, access, [execution_id])
        return Redirect("/console/dead-letters", status_code=303)
