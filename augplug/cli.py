"""The ``augplug`` command: ``plugins``, ``list``, ``describe``, ``check``, ``demo``, ``views``."""

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


def _check_rows(args: argparse.Namespace) -> tuple[list[tuple[str, str, str, list[str]]], bool]:
    """One row per component of the named plugins: (plugin, kind, name, result lines)."""
    from augplug.testing.contracts import check_component

    infos = registry.plugins()
    known = {info.name for info in infos}
    unknown = [name for name in args.plugins if name not in known]
    if unknown:
        raise ValueError(f"plugins: no plugin named {unknown}; installed: {sorted(known)}")
    rows, failed = [], False
    for info in infos:
        if args.plugins and info.name not in args.plugins:
            continue
        if info.status != "ok":
            failed |= info.status == "failed"
            rows.append((info.name, "-", "-", [f"{info.status.upper()}: {info.error}"]))
            continue
        for kind in registry.KINDS:
            for name in sorted(info.components.get(kind, [])):
                report = check_component(
                    kind, name, max_examples=args.max_examples, raise_on_failure=False
                )
                passed = [r.contract for r in report.results if r.status == "pass"]
                lines = [f"pass: {' '.join(passed)}"] if passed else []
                lines += [
                    f"{r.status.upper()} {r.contract}: {r.detail}"
                    for r in report.results
                    if r.status != "pass"
                ]
                failed |= not report.passed
                rows.append((info.name, kind, name, lines))
    return rows, failed


def _cmd_check(args: argparse.Namespace) -> int:
    rows, failed = _check_rows(args)
    header = ("plugin", "kind", "name")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    indent = " " * (sum(widths) + 6)
    out = ["  ".join(c.ljust(w) for c, w in zip(header, widths)) + "  contracts"]
    out.append("  ".join("-" * w for w in widths) + "  " + "-" * 9)
    for *cells, lines in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + lines[0])
        out.extend(indent + line for line in lines[1:])
    bad = sum(any(line.startswith(("FAIL", "FAILED")) for line in r[3]) for r in rows)
    skipped = sum(any(line.startswith("SKIP") for line in r[3]) for r in rows)
    out.append(
        f"\n{len(rows)} components: {len(rows) - bad} without a failure, {bad} failing, "
        f"{skipped} with skips"
    )
    print("\n".join(out))
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    from augplug.demo import main as demo_main

    return demo_main(rest)


def _cmd_views(args: argparse.Namespace, rest: list[str]) -> int:
    from augplug.demo import views_main

    return views_main(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="augplug", description=__doc__.replace("``", "'"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list discovered plugins, what they register, and their status")
    p.add_argument("--strict", action="store_true", help="exit 1 if any plugin failed to load")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("list", help="list the available components")
    p.add_argument("kind", nargs="?", type=registry.normalise_kind, choices=registry.KINDS)
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("describe", help="signature, defaults and docs of one component")
    p.add_argument("kind", type=registry.normalise_kind, choices=registry.KINDS)
    p.add_argument("name")
    p.set_defaults(func=_cmd_describe)
    p = sub.add_parser(
        "check",
        help="run the conformance contracts on the components of the named plugins (or all)",
    )
    p.add_argument("plugins", nargs="*", metavar="PLUGIN", help="names as `augplug plugins` lists")
    p.add_argument(
        "--max-examples", type=int, default=5, help="Hypothesis examples per contract (default 5)"
    )
    p.set_defaults(func=_cmd_check)
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
