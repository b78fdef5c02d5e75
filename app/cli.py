"""``gsv-server``: start the service. Every flag can also be set as a GSV_* environment variable."""

from __future__ import annotations

import argparse

from app.settings import Settings


def parse_args(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="gsv-server", description="Serve GPT-SoVITS text-to-speech over HTTP.")
    parser.add_argument("--host", help="interface to listen on (GSV_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (GSV_PORT, default 9872)")
    parser.add_argument("--weights-root", help="upstream-style weights folder (GSV_WEIGHTS_ROOT, default ./weights)")
    parser.add_argument("--data-dir", help="folder of the voices database (GSV_DATA_DIR, default ./data)")
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL of the voices database (GSV_DATABASE_URL; default: SQLite in --data-dir)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="GSV_DEVICE, default auto")
    parser.add_argument(
        "--half", action=argparse.BooleanOptionalAction, default=None, help="half precision on CUDA (GSV_HALF)"
    )
    parser.add_argument(
        "--demo-if-empty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write demo weights (noise) when the weights root holds no model (GSV_DEMO_IF_EMPTY)",
    )
    parser.add_argument(
        "--fetch-weights",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --demo-if-empty, first try to fetch upstream's pretrained models from the hub "
        "(GSV_FETCH_WEIGHTS, default true)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="GSV_LOG_LEVEL, default info"
    )
    args = parser.parse_args(argv)
    # Only flags given on the command line override the environment.
    return {k: v for k, v in vars(args).items() if v is not None}


def build_settings(argv: list[str] | None = None) -> Settings:
    return Settings(**parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from app.http_limits import uvicorn_config
    from app.main import create_app

    settings = build_settings(argv)
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()


if __name__ == "__main__":
    main()
