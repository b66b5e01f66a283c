"""The ``sls-envelope`` command: parse, call the library, print.

Every command is a thin layer over a library module (``demo``, ``home``, ``stream``,
``bench``, ``keys``, ``kms.local``); nothing in the library imports this module.
Errors are one line on stderr (``sls-envelope: error: ...``) with exit status 1
(2 for bad usage, 130 when interrupted); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import traceback
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, TextIO, Tuple

from . import __version__
from .exceptions import ConfigError, KeyInvalidError, KmsUnavailableError, SlsEnvelopeError
from .home import ENV_VAR, Home
from .kms.local import (
    BYOK_ROLE_POLICIES,
    LocalKms,
    create_log_service_role,
    iso_utc,
    log_service_trust_policy,
)
from .names import SLS_MIN_NAME, check_logstore_name, check_project_name
from .sizes import format_size, parse_size

__all__ = ["main", "build_parser"]

PROG = "sls-envelope"


class UsageError(Exception):
    """Bad command-line input found after parsing (exit status 2)."""


class CommandError(Exception):
    """A command that cannot be carried out, said in one line (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors."""

    #: Set by main() when --json is on the command line, so usage errors are JSON too.
    json_errors = False

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see '{self.prog} --help')"
        if _Parser.json_errors:
            sys.stderr.write(json.dumps({"error": text, "code": "UsageError"}, ensure_ascii=False) + "\n")
        else:
            sys.stderr.write(f"{PROG}: error: {text}\n")
        sys.exit(2)


# ---- output ---------------------------------------------------------------------------------


def _print_json(value: Any, *, file: Optional[TextIO] = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False), file=file or sys.stdout)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> None:
    """Columns aligned on two spaces; ``right`` lists the columns aligned right (figures)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(parts).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _print_fields(fields: Sequence[Tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name.ljust(width)}  {'' if value is None else value}")


def _rate(bytes_per_second: float) -> str:
    """Decimal units, as disks and networks count: MB/s = 10^6 bytes per second."""
    if bytes_per_second >= 1e9:
        return f"{bytes_per_second / 1e9:.2f} GB/s"
    return f"{bytes_per_second / 1e6:.1f} MB/s"


# ---- arguments --------------------------------------------------------------------------------


def _logstore_ref(text: str, min_length: int = 1) -> Tuple[str, str]:
    project, sep, logstore = text.partition("/")
    if not sep or not project or not logstore:
        raise argparse.ArgumentTypeError(f"expected PROJECT/LOGSTORE, got {text!r}")
    # SLS's naming rules (names.py): neither name holds "/" or a control character, so
    # PROJECT/LOGSTORE is unambiguous and nothing raw reaches the terminal.
    try:
        return check_project_name(project, min_length), check_logstore_name(logstore, min_length)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _new_logstore_ref(text: str) -> Tuple[str, str]:
    """A Logstore to create: SLS's minimum length too (names made before it stay reachable)."""
    return _logstore_ref(text, SLS_MIN_NAME)


def _home_dir(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the home directory must not be empty (it would be the current directory)")
    return text


def _json_arg(text: str, what: str) -> Any:
    """A JSON value given inline or as @FILE."""
    source = "inline"
    if text.startswith("@"):
        path = text[1:]
        source = path
        try:
            with open(path, "r", encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read {what} file {path!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{what} file {path!r} is not UTF-8 text") from None
    where = "" if source == "inline" else f" in {source!r}"
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON{where}: {exc}") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise UsageError(f"{what} is nested too deeply{where}") from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


# ---- home and KMS -------------------------------------------------------------------------------


def _home(args: argparse.Namespace) -> Home:
    return Home(args.home)


STORE_ENV_VAR = "SLS_ENVELOPE_STORE"


def _manager(args: argparse.Namespace) -> Any:
    """The home's KMS with the key records of --store (or $SLS_ENVELOPE_STORE): a
    postgresql:// URL shared by many nodes; else the home's SQLite file."""
    home = _home(args)
    url = getattr(args, "store", None) or os.environ.get(STORE_ENV_VAR)
    if not url:
        return home.open_manager()
    if not url.startswith(("postgresql://", "postgres://")):
        raise CommandError(f"--store: expected a postgresql:// URL, got {url.split(':', 1)[0]}:...")
    from .keystore_postgres import PostgresKeyStore

    attempts = int(os.environ.get("SLS_ENVELOPE_STORE_ATTEMPTS", "5"))
    return home.open_manager(store=PostgresKeyStore(url, attempts=attempts))


def _kms(args: argparse.Namespace) -> LocalKms:
    return _home(args).open_kms()


# ---- demo ------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    say: Callable[[str], None] = (lambda line: None) if args.json else (lambda line: print(f"* {line}", flush=True))
    with tempfile.TemporaryDirectory(prefix="sls-envelope-demo-") as tmp:
        if not args.json:
            print(f"sls-envelope demo: embedded LocalKms and key store in a fresh directory ({tmp}), "
                  "removed afterwards", flush=True)
        result = run_demo(tmp, records=args.records, batch_bytes=args.batch_size, say=say)
    if args.json:
        _print_json({
            "records": result.records, "batches": result.batches, "plaintext_bytes": result.plaintext_bytes,
            "seconds": round(result.seconds, 3), "refusals": result.refusals,
            "logstores": [
                {"logstore": f.name, "suite": f.suite, "key_type": f.key_type, "batches": f.batches,
                 "plaintext_bytes": f.plaintext_bytes, "sealed_bytes": f.sealed_bytes,
                 "encrypt_bytes_per_second": round(f.encrypt_bytes_per_second),
                 "decrypt_bytes_per_second": round(f.decrypt_bytes_per_second)}
                for f in result.logstores
            ],
        })
        return 0
    print()
    _print_table(
        ["LOGSTORE", "ALGORITHM", "KEY", "ENCRYPT", "DECRYPT"],
        [[f.name, f.suite, f.key_type, _rate(f.encrypt_bytes_per_second), _rate(f.decrypt_bytes_per_second)]
         for f in result.logstores],
        right=(3, 4),
    )
    print(f"\n{result.records:,} records ({result.plaintext_bytes / 1e6:.1f} MB in {result.batches} batches) "
          f"through each Logstore, every byte verified; throughput is the best of 3 passes, one batch per call. "
          f"Done in {result.seconds:.1f} s.")
    return 0


def _register_demo(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common],
                       help="the whole job end to end on the embedded KMS, with throughput (~10 s)",
                       description="Runs in a temporary directory of its own (--home is not touched): a CMK "
                                   "and a RAM role, an AES service-key and an SM4 BYOK Logstore, a log stream "
                                   "sealed and opened through both, the CMK disabled and enabled again.")
    p.add_argument("--records", type=_positive_int, default=200_000, help="access-log records (default 200000)")
    p.add_argument("--batch-size", type=_size, default=256 * 1024, metavar="SIZE",
                   help="batch size, e.g. 256K (default)")
    p.set_defaults(handler=_cmd_demo)


# ---- logstore ----------------------------------------------------------------------------------


def _record_dict(record: Any) -> Dict[str, Any]:
    conf = json.loads(record.conf)
    return {
        "project": record.project,
        "logstore": record.logstore,
        "encrypted": record.encrypted,
        "suite": record.suite,
        "key_type": record.key_type,
        "key_ref": None if record.key_ref is None else record.key_ref.hex(),
        "cmk_key_id": record.cmk_key_id,
        "role_arn": (conf.get("user_cmk_info") or {}).get("arn"),
        "created_at": iso_utc(record.created_at),
        "encrypt_conf": conf,
    }


def _cmk_state(kms: Any, record: Any) -> Optional[str]:
    """The CMK's state as the KMS reports it now (None: the Logstore has no CMK), so that an
    operator sees why a Logstore refuses: Enabled, Disabled, PendingDeletion, deleted, or
    unreachable / refused (with the KMS's code)."""
    if record.cmk_key_id is None:
        return None
    try:
        return str(kms.describe_key(record.cmk_key_id).get("KeyState") or "unknown")
    except KeyInvalidError as exc:
        return "deleted" if exc.code.endswith("NotFound") else f"refused ({exc.code})"
    except (KmsUnavailableError, OSError) as exc:
        return f"unreachable ({getattr(exc, 'code', None) or type(exc).__name__})"


def _printable(name: str) -> str:
    """A name as text safe for a terminal: records made before the naming rules (names.py)
    may hold control characters, which are shown escaped, never raw."""
    return name if name.isprintable() else repr(name)[1:-1]


def _with_cmk_state(kms: Any, record: Any, asked: Optional[Dict[Any, Optional[str]]] = None) -> Dict[str, Any]:
    """The record with its CMK's state; `asked` keeps the states a command has already
    asked for (every service-key Logstore has the one service CMK: one KMS call, not N)."""
    found = _record_dict(record)
    if asked is None:
        found["cmk_state"] = _cmk_state(kms, record)
    else:
        if record.cmk_key_id not in asked:
            asked[record.cmk_key_id] = _cmk_state(kms, record)
        found["cmk_state"] = asked[record.cmk_key_id]
    return found


def _caller(args: argparse.Namespace, kms: Any) -> Any:
    """--as-user NAME: the RAM user making the request (None: the account)."""
    name = getattr(args, "as_user", None)
    return None if name is None else kms.user(name)


def _cmd_logstore_create(args: argparse.Namespace) -> int:
    project, logstore = args.logstore
    conf = (_json_arg(args.encrypt_conf, "--encrypt-conf") if args.encrypt_conf is not None
            else {"enable": True, "encrypt_type": "default"})
    manager = _manager(args)
    try:
        caller = _caller(args, manager.kms)
        manager.create_logstore(project, logstore, conf, caller=caller)
        record = manager.describe_logstore(project, logstore)
    finally:
        manager.close()
    if args.json:
        _print_json(_record_dict(record))
    else:
        what = f"{record.suite}, {record.key_type} key" if record.encrypted else "not encrypted"
        print(f"created Logstore {project}/{logstore} ({what})")
    return 0


def _register_logstore_create(logstore: Any, common: argparse.ArgumentParser) -> None:
    p = logstore.add_parser("create", parents=[common], help="create a Logstore with an encrypt_conf")
    p.add_argument("logstore", type=_new_logstore_ref, metavar="PROJECT/LOGSTORE")
    p.add_argument("--encrypt-conf", metavar="JSON|@FILE",
                   help='the encrypt_conf (default {"enable": true, "encrypt_type": "default"}: AES-256-GCM '
                        'with a service key; add user_cmk_info for BYOK)')
    p.add_argument("--as-user", metavar="USER", help="act as this RAM user (kms create-user): a BYOK conf "
                                                    "then needs ram:PassRole on its role")
    p.set_defaults(handler=_cmd_logstore_create)


def _cmd_logstore_update(args: argparse.Namespace) -> int:
    """UpdateLogstore's encrypt_conf (or an UpdateLogStoreEncryption body): the rules of
    KeyManager.update_logstore (docs/LOGSTORE.md)."""
    project, logstore = args.logstore
    conf = _json_arg(args.encrypt_conf, "--encrypt-conf")
    manager = _manager(args)
    try:
        manager.update_logstore(project, logstore, conf)
        record = manager.describe_logstore(project, logstore)
    finally:
        manager.close()
    if args.json:
        _print_json(_record_dict(record))
    else:
        enabled = json.loads(record.conf).get("enable")
        print(f"updated Logstore {project}/{logstore} (encryption {'on' if enabled else 'off'})")
    return 0


def _register_logstore_update(logstore: Any, common: argparse.ArgumentParser) -> None:
    p = logstore.add_parser("update", parents=[common],
                            help="update a Logstore's encrypt_conf (only enable may change)")
    p.add_argument("logstore", type=_logstore_ref, metavar="PROJECT/LOGSTORE")
    p.add_argument("--encrypt-conf", metavar="JSON|@FILE", required=True,
                   help='the encrypt_conf, e.g. {"enable": false} to switch encryption off')
    p.set_defaults(handler=_cmd_logstore_update)


def _cmd_logstore_show(args: argparse.Namespace) -> int:
    project, logstore = args.logstore
    manager = _manager(args)
    try:
        record = _with_cmk_state(manager.kms, manager.describe_logstore(project, logstore))
    finally:
        manager.close()
    if args.json:
        _print_json(record)
        return 0
    _print_fields([
        ("Logstore", _printable(f"{record['project']}/{record['logstore']}")),
        ("encrypted", "yes" if record["encrypted"] else "no"),
        ("algorithm", record["suite"] or "-"),
        ("key type", record["key_type"] or "-"),
        ("CMK", record["cmk_key_id"] or "-"),
        ("CMK state", record["cmk_state"] or "-"),
        ("role", record["role_arn"] or "-"),
        ("key ref", record["key_ref"] or "-"),
        ("created", record["created_at"]),
        ("encrypt_conf", json.dumps(record["encrypt_conf"], sort_keys=True)),
    ])
    return 0


def _register_logstore_show(logstore: Any, common: argparse.ArgumentParser) -> None:
    p = logstore.add_parser("show", parents=[common], help="show a Logstore's encryption")
    p.add_argument("logstore", type=_logstore_ref, metavar="PROJECT/LOGSTORE")
    p.set_defaults(handler=_cmd_logstore_show)


def _cmd_logstore_list(args: argparse.Namespace) -> int:
    manager = _manager(args)
    try:
        asked: Dict[Any, Optional[str]] = {}
        records = [_with_cmk_state(manager.kms, r, asked) for r in manager.list_logstores(args.project)]
    finally:
        manager.close()
    if args.json:
        _print_json(records)
        return 0
    if not records:
        print("no Logstores" + (f" in project {args.project}" if args.project else ""))
        return 0
    _print_table(
        ["LOGSTORE", "ALGORITHM", "KEY", "CMK", "CMK STATE", "CREATED"],
        [[_printable(f"{r['project']}/{r['logstore']}"), r["suite"] or "none", r["key_type"] or "-",
          r["cmk_key_id"] or "-", r["cmk_state"] or "-", r["created_at"]] for r in records],
    )
    return 0


def _register_logstore_list(logstore: Any, common: argparse.ArgumentParser) -> None:
    p = logstore.add_parser("list", parents=[common], help="list Logstores")
    p.add_argument("project", nargs="?", metavar="PROJECT", help="only this project's")
    p.set_defaults(handler=_cmd_logstore_list)


def _cmd_logstore_delete(args: argparse.Namespace) -> int:
    """KeyManager.delete_logstore: the key record goes, so every batch sealed under the
    Logstore's data key can no longer be decrypted; the CMK is left as it is."""
    project, logstore = args.logstore
    if not args.yes:
        raise UsageError(f"deleting {project}/{logstore} destroys its data key: data sealed under it can never "
                         "be decrypted again; add --yes to delete")
    manager = _manager(args)
    try:
        record = manager.describe_logstore(project, logstore)
        manager.delete_logstore(project, logstore)
    finally:
        manager.close()
    if args.json:
        _print_json({"deleted": f"{project}/{logstore}", "encrypted": record.encrypted,
                     "cmk_key_id": record.cmk_key_id})
    else:
        tail = (f"; data sealed under its key can no longer be decrypted (CMK {record.cmk_key_id} is kept)"
                if record.encrypted else "")
        print(f"deleted Logstore {project}/{logstore}{tail}")
    return 0


def _register_logstore_delete(logstore: Any, common: argparse.ArgumentParser) -> None:
    p = logstore.add_parser("delete", parents=[common],
                            help="delete a Logstore and its data key (its sealed data becomes unreadable)")
    p.add_argument("logstore", type=_logstore_ref, metavar="PROJECT/LOGSTORE")
    p.add_argument("--yes", action="store_true", help="confirm: data sealed under the key is lost")
    p.set_defaults(handler=_cmd_logstore_delete)


#: Each adds one ``logstore`` subcommand.
LOGSTORE_COMMANDS: List[Callable[[Any, argparse.ArgumentParser], None]] = [
    _register_logstore_create,
    _register_logstore_show,
    _register_logstore_list,
    _register_logstore_update,
    _register_logstore_delete,
]


def _register_logstore(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_commands(sub.add_parser("logstore", help="create, show, list and delete Logstores"), "logstore_command",
                  LOGSTORE_COMMANDS, common)


def _add_commands(
    parser: argparse.ArgumentParser, dest: str, commands: List[Callable[[Any, argparse.ArgumentParser], None]],
    common: argparse.ArgumentParser,
) -> Any:
    """A required COMMAND under `parser`, one subcommand per function of `commands`: the
    one way commands are registered, at the top level and in each group."""
    sub = parser.add_subparsers(dest=dest, metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in commands:
        register(sub, common)
    return sub


# ---- kms ------------------------------------------------------------------------------------------


def _key_row(meta: Dict[str, Any]) -> List[Any]:
    return [meta["KeyId"], meta["KeyState"], meta.get("Description") or "", meta.get("CreationDate", ""),
            meta.get("DeleteDate", "")]


_KEY_HEADERS = ["KEY ID", "STATE", "DESCRIPTION", "CREATED", "DELETES"]


def _print_key(args: argparse.Namespace, meta: Dict[str, Any]) -> None:
    if args.json:
        _print_json(meta)
    else:
        _print_fields([(name, value) for name, value in meta.items()])


def _cmd_kms_create_key(args: argparse.Namespace) -> int:
    kms = _kms(args)
    key_id = kms.create_key(args.description)
    meta = kms.describe_key(key_id)
    if args.json:
        _print_json(meta)
    else:
        print(key_id)
    return 0


def _cmd_kms_list_keys(args: argparse.Namespace) -> int:
    kms = _kms(args)
    keys = [kms.describe_key(entry["KeyId"]) for entry in kms.list_keys()]
    if args.json:
        _print_json(keys)
    elif not keys:
        print("no keys")
    else:
        _print_table(_KEY_HEADERS, [_key_row(meta) for meta in keys])
    return 0


def _cmd_kms_describe_key(args: argparse.Namespace) -> int:
    _print_key(args, _kms(args).describe_key(args.key_id))
    return 0


def _key_state_command(action: Callable[[LocalKms, argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        kms = _kms(args)
        action(kms, args)
        meta = kms.describe_key(args.key_id)
        if args.json:
            _print_json(meta)
        else:
            extra = f" (deleted for good after {meta['DeleteDate']})" if meta.get("DeleteDate") else ""
            print(f"{args.key_id}: {meta['KeyState']}{extra}")
        return 0

    return run


def _cmd_kms_create_role(args: argparse.Namespace) -> int:
    kms = _kms(args)
    if args.trust_policy is None and not args.policy:
        arn = create_log_service_role(kms, args.name)  # the BYOK role of docs/KMS.md
    else:
        trust = (_json_arg(args.trust_policy, "--trust-policy") if args.trust_policy is not None
                 else log_service_trust_policy())
        arn = kms.create_role(args.name, trust_policy=trust, policies=args.policy or list(BYOK_ROLE_POLICIES))
    if args.json:
        _print_json(kms.get_role(args.name))
    else:
        print(arn)
    return 0


def _cmd_kms_create_user(args: argparse.Namespace) -> int:
    kms = _kms(args)
    arn = kms.create_user(args.name)
    for policy in args.policy or []:
        kms.attach_user_policy(args.name, policy)
    if args.json:
        _print_json(kms.get_user(args.name))
    else:
        print(arn)
    return 0


def _cmd_kms_create_access_key(args: argparse.Namespace) -> int:
    ident, secret = _kms(args).create_access_key(args.user)
    if args.json:
        _print_json({"AccessKeyId": ident, "AccessKeySecret": secret})
    else:
        print(f"AccessKeyId      {ident}\nAccessKeySecret  {secret}\n(the secret is shown only now)")
    return 0


def _cmd_kms_attach_user_policy(args: argparse.Namespace) -> int:
    kms = _kms(args)
    kms.attach_user_policy(args.user, args.policy)
    if args.json:
        _print_json(kms.get_user(args.user))
    else:
        print(f"{args.user}: {', '.join(kms.get_user(args.user)['Policies'])}")
    return 0


def _cmd_kms_create_policy(args: argparse.Namespace) -> int:
    kms = _kms(args)
    kms.create_policy(args.name, _json_arg(args.document, "--document"))
    print(args.name)
    return 0


def _cmd_kms_service_credential(args: argparse.Namespace) -> int:
    ident, secret = _kms(args).service_credential()
    if args.json:
        _print_json({"AccessKeyId": ident, "AccessKeySecret": secret})
    else:
        print(f"AccessKeyId      {ident}\nAccessKeySecret  {secret}")
    return 0


def _register_kms_create_key(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("create-key", parents=[common], help="create a CMK (Enabled); prints its KeyId")
    p.add_argument("--description", default="", help="free text shown by describe-key")
    p.set_defaults(handler=_cmd_kms_create_key)


def _register_kms_list_keys(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("list-keys", parents=[common], help="list the CMKs not yet deleted")
    p.set_defaults(handler=_cmd_kms_list_keys)


def _register_kms_describe_key(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("describe-key", parents=[common], help="show a CMK's metadata (as KMS DescribeKey)")
    p.add_argument("key_id", metavar="KEY_ID")
    p.set_defaults(handler=_cmd_kms_describe_key)


def _register_kms_key_states(sub: Any, common: argparse.ArgumentParser) -> None:
    actions: List[Tuple[str, str, Callable[[LocalKms, argparse.Namespace], None]]] = [
        ("enable-key", "enable a CMK", lambda kms, a: kms.enable_key(a.key_id)),
        ("disable-key", "disable a CMK: every BYOK Logstore under it refuses reads and writes",
         lambda kms, a: kms.disable_key(a.key_id)),
        ("schedule-key-deletion", "make a CMK PendingDeletion; it is deleted for good after the window",
         lambda kms, a: kms.schedule_key_deletion(a.key_id, a.pending_window_days)),
        ("cancel-key-deletion", "cancel a scheduled deletion (the CMK is Enabled again)",
         lambda kms, a: kms.cancel_key_deletion(a.key_id)),
    ]
    for name, help_text, action in actions:
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("key_id", metavar="KEY_ID")
        if name == "schedule-key-deletion":
            p.add_argument("--pending-window-days", type=int, default=7, metavar="DAYS",
                           help="7 to 366 (default 7)")
        p.set_defaults(handler=_key_state_command(action))


def _register_kms_create_role(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("create-role", parents=[common],
                       help="create a RAM role the log service may assume for BYOK; prints its ARN")
    p.add_argument("name", metavar="NAME", help="1 to 64 letters, digits, '.' or '-'")
    p.add_argument("--trust-policy", metavar="JSON|@FILE",
                   help="trust policy (default: allow sts:AssumeRole by log.aliyuncs.com)")
    p.add_argument("--policy", action="append", metavar="NAME",
                   help=f"attach a system policy or one made by create-policy; repeatable (default: "
                        f"{' and '.join(BYOK_ROLE_POLICIES)})")
    p.set_defaults(handler=_cmd_kms_create_role)


def _register_kms_users(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("create-user", parents=[common], help="create a RAM user; prints its ARN")
    p.add_argument("name", metavar="NAME", help="1 to 64 letters, digits, '.', '-', '_' or '@'")
    p.add_argument("--policy", action="append", metavar="NAME", help="attach a policy; repeatable")
    p.set_defaults(handler=_cmd_kms_create_user)
    p = sub.add_parser("create-access-key", parents=[common],
                       help="make an AccessKey for a RAM user (for kms serve); prints it once")
    p.add_argument("user", metavar="USER")
    p.set_defaults(handler=_cmd_kms_create_access_key)
    p = sub.add_parser("attach-user-policy", parents=[common], help="attach a policy to a RAM user")
    p.add_argument("user", metavar="USER")
    p.add_argument("policy", metavar="POLICY", help="a system policy (e.g. AliyunSTSAssumeRoleAccess) "
                                                    "or one made by create-policy")
    p.set_defaults(handler=_cmd_kms_attach_user_policy)
    p = sub.add_parser("create-policy", parents=[common],
                       help="create a custom RAM policy (Allow/Deny statements; Deny wins)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--document", required=True, metavar="JSON|@FILE", help="the policy document")
    p.set_defaults(handler=_cmd_kms_create_policy)
    p = sub.add_parser("service-credential", parents=[common],
                       help="show the log service's own AccessKey (made on first use; kms serve accepts "
                            "it as log.aliyuncs.com)")
    p.set_defaults(handler=_cmd_kms_service_credential)


def _add_server_flags(p: argparse.ArgumentParser, port: int, port_help: str, env: str, id_help: str) -> None:
    """The flags `kms serve` and `serve` share: where to listen and the account's AccessKey."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help=port_help)
    p.add_argument("--access-key-id", default=os.environ.get(f"{env}_ID"), help=f"{id_help} (or {env}_ID)")
    p.add_argument("--access-key-secret", help=f"its secret (or {env}_SECRET)")


def _server_secret(args: argparse.Namespace, command: str, env: str) -> str:
    """The AccessKey secret from the flag or the environment (which keeps it out of ps)."""
    secret = args.access_key_secret or os.environ.get(f"{env}_SECRET")
    if not args.access_key_id or not secret:
        raise CommandError(f"{command} needs --access-key-id and --access-key-secret "
                           f"(or {env}_SECRET, which keeps the secret out of ps)")
    return str(secret)


def _server_logging() -> None:
    """What the server commands log: one line per request, time, logger and message.  The
    records skip what that format never shows (the logging HOWTO, "Optimization"): the caller's
    file and line (a walk up the stack and a line-table lookup for every record), thread and
    process names; ``kms serve`` logs every request (issue 15 item 9)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _cmd_kms_serve(args: argparse.Namespace) -> int:
    from .kms.server import KMS_VERSION, STS_VERSION, KmsHttpServer, serve

    secret = _server_secret(args, "kms serve", "SLS_ENVELOPE_KMS_ACCESS_KEY")
    _server_logging()

    kms = _kms(args)
    service_id, _ = kms.service_credential()

    def announce(server: KmsHttpServer) -> None:
        print(f"serving LocalKms at http://{server.endpoint} (KMS {KMS_VERSION}, STS {STS_VERSION}); "
              "Ctrl-C stops", flush=True)
        print(f"the log service (log.aliyuncs.com) signs as AccessKeyId {service_id}; its secret: "
              f"'{PROG} kms service-credential' (kept in {kms.path or 'memory'})", flush=True)

    serve(kms, args.host, args.port, args.access_key_id, secret, region_id=args.region_id,
          ready=announce)
    return 0


def _register_kms_serve(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common],
                       help="serve the LocalKms over HTTP as Alibaba Cloud KMS 2016-01-20 and STS 2015-04-01")
    _add_server_flags(p, 0, "port (default: any free port, printed)", "SLS_ENVELOPE_KMS_ACCESS_KEY",
                      "the account root's AccessKey id")
    p.add_argument("--region-id", default="cn-hangzhou")
    p.set_defaults(handler=_cmd_kms_serve)



# ---- serve (docs/SERVE.md) ------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from .sls.server import serve

    secret = _server_secret(args, "serve", "SLS_ENVELOPE_ACCESS_KEY")
    _server_logging()

    def announce(server: Any) -> None:
        host, port = server.server_address
        endpoint = host if port == 80 else f"{host}:{port}"
        print(f"serving SLS Logstores encrypted at rest at http://{endpoint} (shards in {_home(args).path}/sls); "
              f"LogClient({endpoint!r}, ...); Ctrl-C stops", flush=True)

    kms_credential = None
    if args.kms:
        kms_id, kms_secret = os.environ.get("SLS_ENVELOPE_KMS_ACCESS_KEY_ID"), os.environ.get(
            "SLS_ENVELOPE_KMS_ACCESS_KEY_SECRET")
        if not kms_id or not kms_secret:
            raise CommandError("--kms needs SLS_ENVELOPE_KMS_ACCESS_KEY_ID and SLS_ENVELOPE_KMS_ACCESS_KEY_SECRET: "
                               "the log service's AccessKey at that KMS ('kms service-credential' there)")
        kms_credential = (kms_id, kms_secret)
    serve(args.home, args.host, args.port, args.access_key_id, secret, kms_url=args.kms,
          kms_credential=kms_credential, ready=announce)
    return 0


def _register_serve(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common],
                       help="an SLS endpoint (the SDK's LogClient) whose Logstores are encrypted at rest")
    _add_server_flags(p, 80, "port (default 80: the SLS SDKs send the project in Host only to a port-less "
                             "IP endpoint)", "SLS_ENVELOPE_ACCESS_KEY",
                      "the account's AccessKey id (RAM users' keys made by 'kms create-access-key' are "
                      "accepted too)")
    p.add_argument("--kms", metavar="URL", help="use the KMS at URL (e.g. 'kms serve' elsewhere) instead of the "
                                                "home's; the log service's AccessKey there in "
                                                "SLS_ENVELOPE_KMS_ACCESS_KEY_ID/SECRET")
    p.set_defaults(handler=_cmd_serve)

#: Each adds one ``kms`` subcommand.
KMS_COMMANDS: List[Callable[[Any, argparse.ArgumentParser], None]] = [
    _register_kms_create_key,
    _register_kms_list_keys,
    _register_kms_describe_key,
    _register_kms_key_states,
    _register_kms_create_role,
    _register_kms_users,
    _register_kms_serve,
]


def _register_kms(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_commands(sub.add_parser("kms", help="the embedded KMS: CMKs and RAM roles"), "kms_command", KMS_COMMANDS,
                  common)


# ---- encrypt and decrypt ----------------------------------------------------------------------------


@contextlib.contextmanager
def _input(path: str) -> Iterator[Tuple[BinaryIO, Optional[int]]]:
    """The input file and its size when known ('-' is stdin)."""
    if path == "-":
        yield sys.stdin.buffer, None
        return
    if os.path.isdir(path):
        raise CommandError(f"cannot read {path!r}: it is a directory")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    with handle:
        info = os.fstat(handle.fileno())
        yield handle, info.st_size if stat.S_ISREG(info.st_mode) else None


@contextlib.contextmanager
def _output(path: str, *, binary_ciphertext: bool) -> Iterator[BinaryIO]:
    """'-' is stdout (frames are released as they verify); a path is written whole or not at all."""
    from .atomic_output import atomic_output

    if path == "-":
        if binary_ciphertext and sys.stdout.isatty():
            raise UsageError("refusing to write ciphertext to a terminal; give an output file or redirect")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise CommandError(f"cannot write {path!r}: it is a directory")
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(atomic_output(path))
        except OSError as exc:
            raise CommandError(f"cannot write {path!r}: {exc.strerror or exc}") from None
        yield handle


@contextlib.contextmanager
def _progress(args: argparse.Namespace, total: Optional[int], label: str) -> Iterator[Optional[Callable[[int], None]]]:
    """A progress bar on stderr when it is a terminal and tqdm is installed; else nothing."""
    if args.no_progress or not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:  # the optional `cli` extra is not installed: no bar
        yield None
        return
    with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
              leave=False, dynamic_ncols=True) as bar:
        yield bar.update


def _refuse_same_file(args: argparse.Namespace) -> None:
    """Input and output the same file: writing would replace what is being read (same path or same inode)."""
    if args.input == "-" or args.output == "-":
        same = False
        with contextlib.suppress(OSError):
            a = os.fstat(sys.stdin.fileno()) if args.input == "-" else os.stat(args.input)
            b = os.fstat(sys.stdout.fileno()) if args.output == "-" else os.stat(args.output)
            same = stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    else:
        same = os.path.abspath(args.input) == os.path.abspath(args.output)
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(args.input, args.output)
    if same:
        raise UsageError(f"input and output are the same file ({args.input!r}); "
                         "writing would destroy the input: give another output")


def _open_cipher(args: argparse.Namespace) -> Any:
    project, logstore = args.logstore
    manager = _manager(args)
    cipher = manager.open_logstore(project, logstore)
    if cipher is None:
        manager.close()
        raise ConfigError(f"Logstore {project}/{logstore} is not encrypted (its encrypt_conf has enable false)")
    return manager, cipher


def _cmd_encrypt(args: argparse.Namespace) -> int:
    from .stream import encrypt_stream

    _refuse_same_file(args)
    manager, cipher = _open_cipher(args)
    try:
        with _input(args.input) as (src, size), _output(args.output, binary_ciphertext=True) as dst, \
                _progress(args, size, "encrypt") as progress:
            stats = encrypt_stream(cipher, src, dst, chunk_size=args.chunk_size, progress=progress)
    finally:
        manager.close()
    if args.json:
        # With the stream on stdout, the summary would follow it and corrupt it: stderr then.
        _print_json({"frames": stats.frames, "plaintext_bytes": stats.plaintext_bytes,
                     "stream_bytes": stats.stream_bytes}, file=sys.stderr if args.output == "-" else sys.stdout)
    elif args.output != "-" and args.verbose:
        print(f"encrypted {stats.plaintext_bytes:,} bytes into {stats.frames} frames ({stats.stream_bytes:,} bytes)",
              file=sys.stderr)
    return 0


def _cmd_decrypt(args: argparse.Namespace) -> int:
    from .stream import decrypt_stream

    _refuse_same_file(args)
    manager, cipher = _open_cipher(args)
    try:
        with _input(args.input) as (src, size), _output(args.output, binary_ciphertext=False) as dst, \
                _progress(args, size, "decrypt") as progress:
            stats = decrypt_stream(cipher, src, dst, progress=progress)
    finally:
        manager.close()
    if args.json:
        _print_json({"frames": stats.frames, "plaintext_bytes": stats.plaintext_bytes,
                     "stream_bytes": stats.stream_bytes}, file=sys.stderr if args.output == "-" else sys.stdout)
    return 0


def _add_stream_arguments(sub: Any, common: argparse.ArgumentParser, name: str, verb: str) -> Any:
    """The arguments encrypt and decrypt share."""
    p = sub.add_parser(name, parents=[common], help=f"{verb} a file of any size as a framed stream "
                                                    "(docs/STREAM.md)")
    p.add_argument("logstore", type=_logstore_ref, metavar="PROJECT/LOGSTORE")
    p.add_argument("input", metavar="IN", help="input file, or - for stdin")
    p.add_argument("output", metavar="OUT",
                   help="output file (written whole or not at all), or - for stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return p


def _register_encrypt(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add_stream_arguments(sub, common, "encrypt", "seal")
    p.add_argument("--chunk-size", type=_size, default=1 << 20, metavar="SIZE",
                   help="plaintext bytes per frame (default 1M)")
    p.set_defaults(handler=_cmd_encrypt)


def _register_decrypt(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_stream_arguments(sub, common, "decrypt", "verify and open").set_defaults(handler=_cmd_decrypt)


# ---- bench ------------------------------------------------------------------------------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import DEFAULT_SIZES, bench_environment, plot, run_bench

    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401  (fail before measuring, not after)
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install 'sls-envelope[plot]' "
                                 "(from a clone: pip install -e '.[plot]')") from None
    algorithms = {"aes": ("aes-256-gcm",), "sm4": ("sm4-gcm",), "both": ("aes-256-gcm", "sm4-gcm")}[args.algorithm]
    status = sys.stderr.isatty() and not args.json

    def note(what: str) -> None:
        if status:
            sys.stderr.write(f"\r\x1b[Kmeasuring {what}")
            sys.stderr.flush()

    rows = run_bench(args.sizes or DEFAULT_SIZES, algorithms=algorithms, min_time=args.min_time,
                     repeat=args.repeat, progress=note)
    if status:
        sys.stderr.write("\r\x1b[K")
    environment = bench_environment()
    if args.plot is not None:
        plot(rows, args.plot, environment)
    if args.json:
        _print_json({"environment": environment, "rows": [row.as_dict() for row in rows]})
        return 0
    defaults = ", ".join(f"{alg} {impl}" for alg, impl in environment["default_implementation"].items())
    print(f"CPU: {environment['cpu']}\nsls-envelope {environment['sls_envelope_version']}, "
          f"default implementations: {defaults}\n")
    _print_table(
        ["ALGORITHM", "SIZE", "MODE", "LIBRARY", "IMPLEMENTATION", "MSG/CALL", "NS/MSG", "GB/S", "VS CRYPTOGRAPHY"],
        [[r.algorithm, format_size(r.size), r.mode, r.library, r.implementation, r.messages_per_call,
          f"{r.ns_per_message:,.0f}", f"{r.gbps:.3f}", "-" if r.ratio is None else f"{r.ratio:.2f}x"]
         for r in rows],
        right=(1, 5, 6, 7, 8),
    )
    print("\nencrypt with 16 bytes of AAD; best of the rounds; 'VS CRYPTOGRAPHY' = throughput / cryptography's "
          "(OpenSSL) for the same algorithm, mode and size; batch = encrypt_many (cryptography: a Python loop)")
    if args.plot is not None:
        print(f"plot written to {args.plot}")
    return 0


def _register_bench(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common],
                       help="AES-GCM and SM4-GCM against cryptography (and gmssl) on this CPU")
    p.add_argument("--sizes", type=_size, nargs="+", metavar="SIZE",
                   help="message sizes, e.g. 64 1K 16K 1M (default 64 B to 1 MiB)")
    p.add_argument("--algorithm", choices=("aes", "sm4", "both"), default="both")
    p.add_argument("--plot", metavar="FILE.png", help="also draw a log-log chart (needs matplotlib)")
    p.add_argument("--min-time", type=_positive_float, default=0.02, metavar="SECONDS",
                   help="each round lasts at least this long (default 0.02)")
    p.add_argument("--repeat", type=_positive_int, default=5, help="rounds per figure; the best counts (default 5)")
    p.set_defaults(handler=_cmd_bench)


# ---- the parser ----------------------------------------------------------------------------------------


#: Each adds one top-level command (a group adds its own subcommands), in the order help lists them.
COMMANDS: List[Callable[[Any, argparse.ArgumentParser], None]] = [
    _register_demo,
    _register_serve,
    _register_logstore,
    _register_kms,
    _register_encrypt,
    _register_decrypt,
    _register_bench,
]


def build_parser() -> argparse.ArgumentParser:
    # Options every subcommand accepts after its name too (SUPPRESS: no override of the global value).
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("--home", metavar="DIR", type=_home_dir, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    parser = _Parser(
        prog=PROG,
        description="AES-GCM and SM4-GCM envelope encryption for log-service Logstores, "
                    "with an embedded KMS.",
        epilog=f"Start with '{PROG} demo'.  Exit status: 0 ok, 1 error, 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--home", metavar="DIR", type=_home_dir, default=None,
                        help=f"where the embedded KMS and the key records live (default: ${ENV_VAR}, "
                             "else a per-user data directory); created 0700 on first use")
    parser.add_argument("--store", metavar="URL", default=None,
                        help=f"key records in PostgreSQL (postgresql://...; default: ${STORE_ENV_VAR}, else the "
                             "home's SQLite file), shared by every node of a fleet")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON instead of tables")
    parser.add_argument("-v", "--verbose", action="store_true", default=False,
                        help="show a traceback on errors")
    _add_commands(parser, "command", COMMANDS, common)
    return parser


# ---- main ------------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    message = " ".join(text.split()) or type(exc).__name__
    code = getattr(exc, "code", None)
    if isinstance(exc, SlsEnvelopeError) and code and code not in message:
        message += f" [{code}]"
    return message


class _Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so partial output is removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: Any) -> None:
    raise _Terminated(signum)


def _report(args: argparse.Namespace, message: str, code: str, *, internal: bool = False) -> None:
    """One line on stderr; with --json, one JSON object there instead (stdout may carry data)."""
    if getattr(args, "json", False):
        sys.stderr.write(json.dumps({"error": message, "code": code}, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"{PROG}: {'internal error' if internal else 'error'}: {message}\n")


def _error_code(exc: BaseException, default: str) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(exc, SlsEnvelopeError) and isinstance(code, str) and code else default


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    _Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not args.verbose:
        # psycopg_pool logs each failed connection attempt as a warning; with no logging
        # configured Python prints them raw on stderr, several lines before the one line
        # in which we say the store could not be reached and why.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    # kill, timeout and systemd send SIGTERM; a closed terminal sends SIGHUP: both clean up as Ctrl-C
    # does, then exit 128 + the signal number as a shell reports a signal death (143, 129).
    previous: Dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # main() called from another thread: leave signals alone
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except _Terminated as exc:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 128 + exc.signum
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.  Point stdout at
        # devnull so the interpreter's final flush does not complain.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as exc:
        if args.verbose:
            traceback.print_exc()
        _report(args, _one_line(exc), _error_code(exc, "UsageError"))
        return 2
    except (CommandError, SlsEnvelopeError, OSError, ValueError, ImportError) as exc:
        if args.verbose:
            traceback.print_exc()
        _report(args, _one_line(exc), _error_code(exc, type(exc).__name__))
        return 1
    except Exception as exc:  # a bug: still one line unless asked for more
        if args.verbose:
            traceback.print_exc()
        _report(args, f"{type(exc).__name__}: {_one_line(exc)} (run with --verbose for the traceback)",
                "InternalError", internal=True)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
