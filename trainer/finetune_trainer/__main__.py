"""`python -m finetune_trainer --config PATH_OR_URI`: the in-cluster entry point.

The operator's RayJob runs this on the Ray head with the job's JobConfig (JSON or
YAML; a local path or an s3:// URI). It connects to the Ray cluster it runs in
(RAY_ADDRESS), or starts a local one, trains, and prints `finetune-progress:` lines
that the operator reads from the submitter's log. Errors end with one `error:` line
and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence


def load_job_config(location: str):
    """A validated JobConfig from a JSON or YAML file (local or s3://)."""
    import yaml
    from pydantic import ValidationError

    from finetune_trainer import storage
    from finetune_trainer.config import JobConfig
    from finetune_trainer.errors import StorageError, TrainerError

    try:
        raw = storage.read_bytes(location)
    except StorageError as err:
        raise TrainerError(f"--config: cannot read {location}: {err}") from err
    try:
        text = raw.decode("utf-8")
        document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise TrainerError(f"--config: {location} is neither valid JSON nor YAML: {err}") from err
    if not isinstance(document, dict):
        raise TrainerError(f"--config: {location} must hold a JobConfig mapping (name, config, scaling)")
    try:
        return JobConfig.model_validate(document)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()
        )
        raise TrainerError(f"--config: {location} is not a valid JobConfig: {problems}") from None


def main(argv: Sequence[str] | None = None) -> int:
    from finetune_trainer.local_ray import use_loopback_for_embedded_ray

    use_loopback_for_embedded_ray()
    parser = argparse.ArgumentParser(prog="python -m finetune_trainer",
                                     description="Run one fine-tuning job (a JobConfig) on Ray.")
    parser.add_argument("--config", required=True, metavar="PATH_OR_URI",
                        help="JobConfig as JSON or YAML: a local path or s3://bucket/key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from finetune_trainer.errors import TrainerError

    try:
        job = load_job_config(args.config)
        from finetune_trainer.runner import run_job

        result = run_job(job)
    except TrainerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    state = "already finished; not trained again" if result.already_finished else "finished"
    print(f"job {result.name} {state}: model at {result.model_uri}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
