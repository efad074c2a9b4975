"""The ``augplug`` command: ``plugins``, ``list``, ``describe``, ``demo``, ``views``."""

from __future__ import annotations

import argparse
import os
import sys

from augplug import registry


def _plugins_table() -> str:
    """One block per plugin: a header row, then one line per kind it registers and any problems."""
    header = ("plugin", "distribution", "status", "components")
    rows: list[tuple[str, str, str, list[str]]] = []
    for info in registry.plugins():
        dist = f"{info.distribution or '-'} {info.version or ''}".strip()
        lines = [f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(info.components.items())]
        lines += [f"unavailable {name}: {reason}" for name, reason in sorted(info.unavailable.items())]
        if info.error:
            lines.append(f"{'error' if info.status == 'failed' else 'note'}: {info.error}")
        rows.append((info.name, dist, info.status, lines or ["-"]))
    widths = [max(len(r[i]) for r in [header[:3], *(r[:3] for r in rows)]) for i in range(3)]
    indent = " " * (sum(widths) + 6)

    def line(cells: tuple[str, str, str], last: str) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + last

    out = [line(header[:3], header[3]), line(tuple("-" * w for w in widths), "-" * 10)]
    for name, dist, status, lines in rows:
        out.append(line((name, dist, status), lines[0]))
        out.extend(indent + extra for extra in lines[1:])
    return "\n".join(out)


def _cmd_plugins(args: argparse.Namespace) -> int:
    print(_plugins_table())
    return 0 if all(p.status != "failed" for p in registry.plugins()) or not args.strict else 1


def _cmd_list(args: argparse.Namespace) -> int:
    table = registry.available()
    for kind in [args.kind] if args.kind else registry.KINDS:
        print(f"{kind}: {', '.join(table[kind]) or '-'}")
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    print(registry.describe(args.kind, args.name))
    return 0


def _cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    from augplug.demo import main as demo_main

    return demo_main(rest)


def _cmd_views(args: argparse.Namespace, rest: list[str]) -> int:
    from augplug.demo import views_main

    return views_main(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="augplug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list discovered plugins, what they register, and their status")
    p.add_argument("--strict", action="store_true", help="exit 1 if any plugin failed to load")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("list", help="list the available components")
    p.add_argument("kind", nargs="?", choices=registry.KINDS)
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("describe", help="signature, defaults and docs of one component")
    p.add_argument("kind", choices=registry.KINDS)
    p.add_argument("name")
    p.set_defaults(func=_cmd_describe)
    # demo and views parse their own options (see `augplug demo --help`).
    sub.add_parser("demo", help="train small encoders with several view strategies and report", add_help=False)
    sub.add_parser("views", help="render a grid of views from any registered generator", add_help=False)

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("demo", "views"):
        args = argparse.Namespace(command=argv[0])
        return (_cmd_demo if argv[0] == "demo" else _cmd_views)(args, argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (LookupError, ValueError) as exc:
        print(f"augplug: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `augplug describe ... | head` closed the pipe early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
