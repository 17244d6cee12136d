"""The source: which versions of a model should be served, read off its base path by the version policy."""

import logging
import os
import re

from ..util import status

log = logging.getLogger("tensorflow_serving.sources")

# Version folders are whole int64 numbers (safe_strto64): "00000123" is 123, "v1" or "1.0" are ignored.
_VERSION = re.compile(r"^\s*-?[0-9]+\s*$")


def version_folders(name, base_path):
    """{version: path} of the numeric children of base_path; raise if base_path cannot be listed."""
    try:
        children = sorted(os.listdir(base_path))
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path, which no file's path holds
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise status.invalid_argument(
            f"Could not find base path {base_path} for servable {name} with error {reason}") from None
    found = {}
    for child in children:
        if not _VERSION.match(child) or not os.path.isdir(os.path.join(base_path, child)):
            continue
        version = int(child)
        if not -2**63 <= version < 2**63:
            continue
        if version in found:
            log.warning("Duplicate version directories detected. Version %d will be loaded from %s, "
                        "%s will be ignored.", version, os.path.join(base_path, child), found[version])
        found[version] = os.path.join(base_path, child)
    return found


def aspired_versions(model_config):
    """{version: path} that the model's version policy wants served, from what is on disk now."""
    name, base_path = model_config.name, model_config.base_path
    found = version_folders(name, base_path)
    policy = model_config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        wanted = found
    elif kind == "specific":
        wanted = {}
        for version in policy.specific.versions:
            if version in found:
                wanted[version] = found[version]
            else:
                log.warning("Version %d of servable %s, which was requested to be served as a 'specific' "
                            "version in the servable's version policy, was not found in the file system",
                            version, name)
    else:  # latest is the default
        count = max(policy.latest.num_versions, 1) if kind == "latest" else 1
        wanted = {v: found[v] for v in sorted(found)[-count:]}
    if not wanted:
        log.warning("No versions of servable %s found under base path %s. Did you forget to name your "
                    "leaf directory as a number (eg. '/1/')?", name, base_path)
    return wanted
