# Shared set-up of the otbio workflow: config checking (at start, before any job) and the
# small helpers the rule files use. Nothing here computes results: every rule calls `otbio`.

import copy
import glob
import os
import shlex
import shutil
import subprocess
import sys

import yaml
from jsonschema import Draft202012Validator, validators


class ConfigError(Exception):
    """A bad workflow config; the message names the key and the fix."""


def _with_defaults(validator_class):
    """A validator that fills in the schema's defaults while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _key(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err):
    """One line per schema violation, naming the config key."""
    where = _key(err.absolute_path)
    inst = err.instance
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(inst) - set(known))
        name = ", ".join(f"'{_key([*err.absolute_path, k])}'" for k in extra)
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return f"unknown config key {name}{hint}"
    if "propertyNames" in err.relative_schema_path:
        if err.validator == "enum":
            known = ", ".join(map(str, err.validator_value))
            return f"unknown config key '{_key([*err.absolute_path, inst])}' (known keys: {known})"
        return f"config key '{where}': name {inst!r} is not allowed ({err.message})"
    if err.validator == "required":
        missing = err.message.split("'")[1]
        return f"config key '{_key([*err.absolute_path, missing])}' is missing"
    if err.validator in ("minimum", "exclusiveMinimum"):
        op = ">=" if err.validator == "minimum" else ">"
        return f"config key '{where}' must be {op} {err.validator_value} (got {inst!r})"
    if err.validator == "enum":
        choices = ", ".join(map(str, err.validator_value))
        return f"config key '{where}' must be one of {choices} (got {inst!r})"
    if err.validator == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"config key '{where}' must be of type {want} (got {inst!r})"
    return f"config key '{where or '<top>'}': {err.message}"


def check_config(cfg, schema_path):
    """Validate `cfg` in place (defaults filled in); raise ConfigError naming each bad key."""
    if not cfg:
        msg = "no config given; pass --configfile (see workflows/config/config.yaml)"
        raise ConfigError(msg)
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), e.message))
    if errors:
        lines = sorted({_describe(e) for e in errors})
        msg = "bad workflow config: " + "; ".join(lines)
        raise ConfigError(msg)


def check_command(cmd, key):
    """The program that a config key names must be on PATH."""
    prog = shlex.split(cmd)[0]
    if shutil.which(prog) is None:
        msg = f"config key '{key}': command '{prog}' not found on PATH (activate otbio's environment or give the full path)"
        raise ConfigError(msg)


def check_file(path, key):
    """A config key that names an input file must name an existing file."""
    if not os.path.isfile(path):
        msg = f"config key '{key}': file '{path}' not found (relative paths are relative to {os.getcwd()})"
        raise ConfigError(msg)


def check_dir(path, key):
    if not os.path.isdir(path):
        msg = f"config key '{key}': folder '{path}' not found (relative paths are relative to {os.getcwd()})"
        raise ConfigError(msg)


def chunks(items, size):
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def spread(items, k):
    """k items evenly spread over `items` (deterministic)."""
    if k is None or k >= len(items):
        return list(items)
    n = len(items)
    return [items[(i * n) // k] for i in range(k)]


def q(value):
    """Quote a value for the shell."""
    return shlex.quote(str(value))


# --------------------------------------------------------------------------------------------
# resources: defaults per rule, overridden by config["resources"][rule]

DEFAULT_RESOURCES = {
    "lot_reference": {"threads": 4, "mem_mb": 8000, "runtime": 60},
    "lot_embed": {"threads": 4, "mem_mb": 8000, "runtime": 120},
    "lot_concat": {"threads": 1, "mem_mb": 4000, "runtime": 30},
    "lot_classify": {"threads": 2, "mem_mb": 4000, "runtime": 60},
    "lot_distances": {"threads": 2, "mem_mb": 4000, "runtime": 60},
    "lot_report": {"threads": 1, "mem_mb": 500, "runtime": 10},
    "slices_register": {"threads": 4, "mem_mb": 8000, "runtime": 120},
    "slices_stack": {"threads": 1, "mem_mb": 8000, "runtime": 30},
    "search_chunk": {"threads": 4, "mem_mb": 4000, "runtime": 60},
    "search_merge": {"threads": 1, "mem_mb": 1000, "runtime": 10},
    "search_index_shard": {"threads": 4, "mem_mb": 8000, "runtime": 120},
    "search_index_query": {"threads": 2, "mem_mb": 4000, "runtime": 30},
}


def _default_resource(name):
    """A value given with --default-resources (on the command line or in the profile)."""
    settings = getattr(workflow, "resource_settings", None)
    args = getattr(getattr(settings, "default_resources", None), "args", None) or []
    for arg in args:
        key, _, value = str(arg).partition("=")
        if key.strip() == name:
            return value.strip().strip("'\"") or None
    return None


def _slurm_minutes(text):
    """A SLURM time limit ("infinite", "2-00:00:00", "12:00:00", "30:00", "30") in minutes."""
    text = text.strip().lower()
    if not text or text in ("infinite", "unlimited", "n/a"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 3:
        minutes = parts[0] * 60 + parts[1] + (parts[2] > 0)
    elif len(parts) == 2:
        minutes = parts[0] + (parts[1] > 0)
    else:
        minutes = parts[0]
    return minutes + 1440 * int(days or 0)


def _profile_executor(name):
    """The `executor:` of a Snakemake profile given by path or by name, or None."""
    dirs = [name] if os.sep in name or os.path.isdir(name) else []
    dirs += [os.path.join(os.path.expanduser("~/.config/snakemake"), name),
             os.path.join("/etc/xdg/snakemake", name)]  # fmt: skip
    for d in dirs:
        f = os.path.join(d, "config.yaml")
        if os.path.isfile(f):
            try:
                with open(f) as fh:
                    return str((yaml.safe_load(fh) or {}).get("executor") or "") or None
            except (OSError, yaml.YAMLError):
                return None
    return None


def slurm_in_use():
    """True when this run's jobs go to SLURM: `--executor slurm` (or `-e slurm`), a profile
    whose `executor:` is slurm (`--profile`, `--workflow-profile`, $SNAKEMAKE_PROFILE), or a
    job already running inside a SLURM allocation. Read from the command line because
    Snakemake parses the Snakefile before it sets up its executor."""
    if workflow.remote_exec:
        return "SLURM_JOB_ID" in os.environ
    argv = sys.argv[1:]
    profiles = [os.environ["SNAKEMAKE_PROFILE"]] if os.environ.get("SNAKEMAKE_PROFILE") else []
    executor = None
    for i, tok in enumerate(argv):
        name, eq, value = tok.partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if name in ("--executor", "-e"):
            executor = value
        elif name in ("--profile", "--workflow-profile"):
            profiles.append(value)
    if executor is None:
        for prof in profiles:
            executor = _profile_executor(prof) or executor
    return bool(executor) and executor.startswith("slurm")


def partition_limits():
    """What one node of the SLURM partition that jobs go to offers: a dict with the partition
    name, cpus, mem_mb and minutes (None: no limit), or None when not on a SLURM cluster
    (no `sinfo`), when config `fit_to_partition` is false, when it is `auto` (the default)
    and the jobs do not go to SLURM (see slurm_in_use: a local run never waits on `sinfo`),
    or when sinfo cannot answer.

    The partition is `slurm_partition` from --default-resources (the profile), else the
    cluster's default partition (the one sinfo marks with '*')."""
    fit = config.get("fit_to_partition", "auto")
    if fit is False or shutil.which("sinfo") is None:
        return None
    if fit == "auto" and not slurm_in_use():
        return None
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%P|%c|%m|%l"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [ln.strip().split("|") for ln in out.splitlines() if ln.count("|") == 3]
    if not rows:
        return None
    wanted = _default_resource("slurm_partition")
    if wanted is None:
        default = [r[0].rstrip("*") for r in rows if r[0].endswith("*")]
        if not default:
            return None
        wanted = default[0]
    nodes = [r for r in rows if r[0].rstrip("*") == wanted]
    if not nodes:
        names = ", ".join(sorted({r[0].rstrip("*") for r in rows}))
        msg = f"slurm_partition '{wanted}' (--default-resources) is not a partition of this cluster (sinfo lists: {names})"
        raise ConfigError(msg)

    def largest(i):
        vals = [int(r[i].rstrip("+")) for r in nodes if r[i].rstrip("+").isdigit()]
        return max(vals) if vals else None

    return {
        "partition": wanted,
        "cpus": largest(1),
        "mem_mb": largest(2),
        "minutes": _slurm_minutes(nodes[0][3]),
    }


PARTITION = None  # set by the Snakefile after the config check
_LOWERED = {}


def _cap(rule_name, what, value):
    """Lower a request to config `max_threads` and to what the partition offers."""
    limit, where = None, None
    if what == "threads" and config.get("max_threads") is not None:
        limit, where = int(config["max_threads"]), "max_threads"
    if PARTITION is not None:
        key = {"threads": "cpus", "mem_mb": "mem_mb", "runtime": "minutes"}[what]
        if PARTITION[key] is not None and (limit is None or PARTITION[key] < limit):
            limit, where = PARTITION[key], f"partition '{PARTITION['partition']}'"
    if limit is not None and value > limit:
        if (rule_name, what) not in _LOWERED:
            _LOWERED[(rule_name, what)] = (value, limit)
            print(
                f"otbio workflow: {rule_name} {what} {value} lowered to {limit} ({where})",
                file=sys.stderr,
            )
        return limit
    return value


def res(rule_name, what):
    """A rule's threads, mem_mb or runtime (minutes): the config's `resources` override or the
    default above, lowered to fit (see _cap). mem_mb and runtime grow with the attempt (a job
    resubmitted by `retries` after running out of time or memory gets twice as much), still
    within the partition's limits."""
    override = (config.get("resources") or {}).get(rule_name, {})
    value = override.get(what, DEFAULT_RESOURCES[rule_name][what])
    if what == "threads":
        return _cap(rule_name, what, value)
    first = _cap(rule_name, what, value)
    return lambda wildcards, attempt: first if attempt == 1 else _cap(rule_name, what, value * attempt)


def otbio_cmd(threads_expr="{threads}"):
    """The otbio prefix with the global options every rule passes."""
    return f"{config['otbio']} --seed {int(config['seed'])} --jobs {threads_expr}"
