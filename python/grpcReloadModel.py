#!/usr/bin/env python3
"""HandleReloadConfigRequest: replace the set of models TF Serving serves.

TF Serving serves exactly the config it is sent: models left out are unloaded. -c FILE sends a
whole config (the text ModelServerConfig the server reads, checked here first); -m NAME sends a
one-model config and warns that every other model will be unloaded. Every flag is checked before anything is sent
(tfsclient/model_config.py); a reload cut short (no answer within -t, the connection lost) says it may have been
applied, and how to check.

--fleet sends the config to every replica behind -s (tfsclient/fleet.py) and says what each did: reloaded
and serving it, failed (it kept its config), not served after the reload, or unknown (no answer in time: it
may have taken it). A reload is never retried. When the config does not land everywhere, --rollback OLD
sends OLD to the replicas that took the new one or may have.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import os
import sys

from tfsclient import common, model_config, reloading

PROGRAM = "grpcReloadModel.py"
MODELS_DIR = os.environ.get("TFS_MODELS_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "save")


def build_parser():
    parser = common.parser(
        "Tell TF Serving which models to serve (HandleReloadConfigRequest). The config sent replaces the "
        "whole served set.",
        "python3 grpcReloadModel.py -c ../models/save/toy_labels.config", model=False, versions=False)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="a text ModelServerConfig, as for tensorflow_model_server --model_config_file")
    parser.add_argument("--base-path", metavar="PATH",
                        help="with -m: the model's folder of numbered versions, as the server sees it "
                             "(default: $TFS_MODELS_DIR/NAME, else this repo's models/save/NAME)")
    parser.add_argument("--versions", metavar="N,N", help="with -m: serve these versions (default: the "
                        "versions available now, or the latest if the model is not served yet)")
    parser.add_argument("--latest", metavar="N", help="with -m: serve the N latest versions")  # model_config checks it
    parser.add_argument("--label", action="append", default=[], metavar="LABEL=N",
                        help="with -m: version label, e.g. stable=1 (repeatable; the version must be available)")
    parser.add_argument("--rollback", metavar="OLD_CONFIG",
                        help="with --fleet: when the new config does not land on every replica, send OLD_CONFIG "
                             "(checked like -c before anything is sent) to those that took the new one or may "
                             "have; the rollback has a -t of its own")
    return parser


def fleet_config(args, flags):
    """The one config every replica gets, and the rollback's, both checked before anything is sent."""
    if args.model and args.versions is None and args.latest is None:
        raise common.InputError("with --fleet, -m needs --versions or --latest: the versions a server has now "
                                "may differ from replica to replica, and each would get a different config")
    if args.config:
        config = model_config.parse_config_file(args.config)
    else:  # built once, without asking a server
        config = model_config.one_model_config(args, flags, None, MODELS_DIR)
    old = None
    if args.rollback:
        try:
            old = model_config.parse_config_file(args.rollback)
        except common.InputError as e:
            raise common.InputError(f"--rollback: {e}") from None
    return config, old


def reload(args):
    if bool(args.config) == bool(args.model):
        raise common.InputError("give -c FILE (a whole config) or -m NAME (one model)")
    if args.config and (args.base_path is not None or args.versions is not None or args.label
                        or args.latest is not None):
        raise common.InputError("--base-path, --versions, --latest and --label go with -m, not -c")
    if args.versions is not None and args.latest is not None:
        raise common.InputError("--versions and --latest are exclusive")
    if args.rollback and not args.fleet:
        raise common.InputError("--rollback goes with --fleet (it puts back the replicas that took a config "
                                "others did not); on one server, reload the old config with -c")
    flags = model_config.one_model_flags(args) if args.model else None  # every flag checked before anything is sent
    if args.fleet:
        config, old = fleet_config(args, flags)
        return reloading.reload_fleet(args, config, old, PROGRAM)
    config = model_config.parse_config_file(args.config) if args.config else None
    with common.client(args) as client:
        if config is None:
            config = model_config.one_model_config(args, flags, client, MODELS_DIR)
            print(f"{PROGRAM}: warning: TF Serving will serve only model {args.model} now; every other model "
                  "is unloaded (use -c FILE to keep several)", file=sys.stderr)
        reloading.warn_if_empty(config, args, PROGRAM)
        reloading.reload_one(client, config, args)
    names = [m.name for m in config.model_config_list.config]
    if args.format == "json":
        common.dump_json({"reloaded": names})
    elif args.model:
        print(f"model {args.model} reloaded successfully")
    elif names:
        print(f"config reloaded successfully: {', '.join(names)}")
    else:
        # Exit 0: the reload did what the config says and TF Serving answered OK; the config may mean it (a server
        # taken out of service), and a failure status would make a caller retry a reload that took. The warning
        # before sending, and this line, say what it did.
        print("config reloaded successfully: TF Serving serves no model now")


def main(argv=None) -> int:
    parser = build_parser()
    parser.add_argument("-m", "--model", help="reload this one model (every other model is unloaded)")
    args = parser.parse_args(argv)
    return common.run(reload, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
