"""The ``falnb`` command: ``falnb emulator``, ``falnb cache ...``, ``falnb models``."""

from __future__ import annotations

import sys

from ._redact import hide_credentials

__all__ = ["main"]

_USAGE = """usage: falnb COMMAND [ARGS]

commands:
  emulator   run the fal emulator as a local HTTP server (falnb emulator --help)
  cache      inspect, prune, export and import the response cache (falnb cache --help)
  models     list the catalogued models, their aliases, size fields and prices; through a LiteLLM proxy
             (LITELLM_PROXY_API_BASE and LITELLM_PROXY_API_KEY, no fal key) also its team model names; or fal's own
             (falnb models --search edit --category image-to-image [--status deprecated] [--prices])
  quickstart run notebooks/01-quickstart.ipynb headless and write its images to out/quickstart
"""


def _models() -> int:
    from .catalog._catalog import default_catalog

    for m in (*default_catalog().models, *default_catalog().image_models):
        price = "?" if m.price is None else f"${m.price.usd:g}/{m.price.basis}"
        print(f"{m.alias:18} {m.id:48} {m.size_field or '-':13} {price}")
    from ._client import Client
    from ._exceptions import FalnbError

    try:
        client = Client(cache=False)
        teams = client.proxy_models()
    except FalnbError as exc:
        print(f"falnb models: {exc.message}", file=sys.stderr)
        return 1
    if client.proxy is not None:
        print(f"\nteam models of the LiteLLM proxy at {hide_credentials(client.proxy.url)}:")
        for name, fal_id in teams.items():
            print(f"{name:18} {fal_id or '(not a fal model)'}")
        client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "emulator":
        from .emulator._server import main as emulator_main

        return int(emulator_main(rest))
    if command == "cache":
        from .cache._cli import main as cache_main

        return int(cache_main(rest))
    if command == "quickstart":
        from ._quickstart import main as quickstart_main

        return quickstart_main(rest)
    if command == "models":
        from ._discover import main as models_main

        return models_main(rest) if rest else _models()
    print(f"falnb: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
