"""A console user as httpx sees it: the sign-in page, its form, and the cookies set.

Cookies are read from `Set-Cookie` and sent back by hand, so a test sees exactly what the
server set (`Secure` cookies included, which a client keeps off plain http).
"""

from __future__ import annotations

import re
from http.cookies import Morsel, SimpleCookie

import httpx

SESSION = "hookline_console"
LOGIN = "hookline_console_login"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def set_cookies(answer: httpx.Response) -> dict[str, Morsel[str]]:
    """Every cookie an answer sets, by name."""
    found: dict[str, Morsel[str]] = {}
    for header in answer.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


def csrf_of(page: httpx.Response) -> str:
    """The CSRF value of the first form on a page."""
    match = _CSRF.search(page.text)
    assert match is not None, page.text
    return match[1]


async def sign_in(base_url: str, token: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """Open the sign-in page and send its form with `token`, as a browser does."""
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        page = await client.get("/console/login")
        login = set_cookies(page).get(LOGIN)
        match = _CSRF.search(page.text)
        # (A form without a CSRF value is sent as it is: a test then fails on what it checks.)
        return await client.post(
            "/console/login",
            data={"token": token, "csrf": match[1] if match else ""},
            headers={"Cookie": f"{LOGIN}={login.value}" if login else ""},
        )


def session_of(answer: httpx.Response) -> str:
    """The session cookie's value a sign-in answer set."""
    return set_cookies(answer)[SESSION].value


async def get(base_url: str, path: str, session: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.get(path, headers={"Cookie": f"{SESSION}={session}"})


async def post(base_url: str, path: str, session: str, data: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post(path, data=data, headers={"Cookie": f"{SESSION}={session}"})


CHROMIUM = "/usr/bin/chromium"  # Debian's; a test never downloads a browser
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
