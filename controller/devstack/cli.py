"""``python -m controller.devstack up|install|down|status|env [--only NAME[,NAME]]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.devstack.layout import StackError, find_repo_root
from controller.devstack.stack import ORDER, Stack, env_exports


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m controller.devstack",
        description="Local stack of real backends (PostgreSQL, Hive metastore, Kafka, Spark Thrift "
                    "Server, Presto, Airflow, etcd + kube-apiserver) on 127.0.0.1, state under .stack/.")
    p.add_argument("--root", type=Path, default=None, help="repo root (default: found from cwd)")
    sub = p.add_subparsers(dest="cmd", required=True)
    only_help = f"comma-separated components ({', '.join(ORDER)}; aliases: airflow, hive, spark, hms, kube)"
    for name, help_ in (("up", "install what is missing, start everything, wait for health"),
                        ("install", "install what `up` would, start nothing (CI: in the background)"),
                        ("down", "stop what `up` started (by pid)"),
                        ("status", "component, state, port, pid, version, RSS; exit 1 if one is down")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--only", default="", help=only_help)
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    sub.add_parser("env", help="print `export` lines for SPARK_HOME, SPARK_CONF_DIR, JAVA_HOME, "
                               "PYSPARK_PYTHON")
    args = p.parse_args(argv)

    root = (args.root or find_repo_root()).resolve()
    only = [s for s in getattr(args, "only", "").split(",") if s.strip()] or None
    stack = Stack(root)
    try:
        if args.cmd == "up":
            return stack.up(only)
        if args.cmd == "install":
            return stack.install(only)
        if args.cmd == "down":
            return stack.down(only)
        if args.cmd == "status":
            return stack.status(only, as_json=args.json)
        if args.cmd == "env":
            print(env_exports(root))
            return 0
    except StackError as e:
        print(f"devstack {args.cmd}: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"devstack {args.cmd}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2
