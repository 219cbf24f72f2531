"""What Airflow learns about airflow-byo through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_byo import __version__

INTEGRATION = "BYO Data Flows"


#: The ``[byo]`` section (``AIRFLOW__BYO__<OPTION>``).
_OPTIONS: dict[str, Any] = {
    "sandbox": {
        "description": "How processor children are isolated: 'auto' runs each one in a bubblewrap "
        "sandbox (new namespaces, a minimal read-only view of the file system, no network unless "
        "job_config.network) when bubblewrap works on the worker, else unsandboxed with a warning; "
        "'required' fails instead; 'off' never sandboxes (trusted code only).",
        "version_added": "0.1.0",
        "type": "string",
        "example": "required",
        "default": "auto",
    },
    "sandbox_uid_range": {
        "description": "Host uids a root worker lends its sandboxed children, one per child "
        "('first-last'; the gid is the same number). No account on the workers may use them; a "
        "worker that is not root runs its children as its own uid instead. The worker needs "
        "/run/airflow-byo writable (uid locks, view mount points).",
        "version_added": "0.1.0",
        "type": "string",
        "example": "1900000000-1900065535",
        "default": "1900000000-1900065535",
    },
    "ledger_conn_id": {
        "description": "Connection of the ledger database shared by all workers "
        "(a 'postgres' connection in production). Empty means a SQLite file under "
        "$AIRFLOW_HOME/byo, which only works on one machine.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "byo_ledger",
        "default": "",
    },
    "function_library": {
        "description": "Directory of the reusable function library, readable by every "
        "worker: e.g. a folder in the DAGs bundle (versioned with the DAGs) or a shared "
        "volume. Empty means $AIRFLOW_HOME/byo/functions.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/opt/airflow/dags/byo_functions",
        "default": "",
    },
    "max_spec_bytes": {
        "description": "Flow spec files larger than this many bytes are refused unread "
        "(by the DAG factory, `airflow byo validate` and `airflow byo test --spec`), so one "
        "huge file cannot stall DAG parsing.",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "4194304",
        "default": "1048576",
    },
    "runtimes": {
        "description": "Path to a YAML or JSON file of named runtimes that flows pick with "
        "runtime=\"<name>\": base packages (a flow's pin of the same package overrides the runtime's), "
        "an existing interpreter (python), the sandbox network default and extra read-only paths, and "
        "default job_config limits. Empty: only the built-in 'default' runtime (no base packages). Read "
        "at DAG-parse time and on workers (cached until the file changes): keep it at the same path on "
        "every DAG processor and worker.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/opt/airflow/byo-runtimes.yaml",
        "default": "",
    },
    "image_cache_path": {
        "description": "Directory holding the unpacked images of image runtimes (one folder per "
        "pinned digest, with the virtualenvs built with the image's Python). Empty means "
        "$AIRFLOW_HOME/byo/images. A local disk of each worker; `airflow byo runtimes list|pull|prune` "
        "show and manage it.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/var/cache/airflow-byo/images",
        "default": "",
    },
    "image_cache_max_mb": {
        "description": "Most megabytes the unpacked images in image_cache_path may take together; "
        "an image that would go over it is not unpacked (the error says so: prune, or raise this). "
        "0: no cap (the disk's free space still is one).",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "20480",
        "default": "20480",
    },
    "max_workers": {
        "description": "Most children one task runs side by side (job_config.workers, whose 'auto' "
        "is the CPUs available to the task): a ceiling for this worker machine, since each child has "
        "its own memory cap (job_config.max_memory_mb) and its own sandbox.",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "4",
        "default": "8",
    },
    "venv_cache_path": {
        "description": "Directory holding the cached virtualenvs of flows, one per set "
        "of packages. Empty means $AIRFLOW_HOME/byo/venvs. Use a local disk of each "
        "worker (environments are built once per machine).",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/opt/airflow/byo-venvs",
        "default": "",
    },
    "protected_paths": {
        "description": "More folders no flow may read or write, besides AIRFLOW_HOME, the DAGs and "
        "plugins folders, the venv cache, the function library, the ledger's files, the runtimes "
        "file, /proc, /sys, /dev, /etc and /boot: absolute paths separated by commas or new lines. A "
        "local source, destination, quarantine or runtime read-only path inside one of them, or "
        "containing one, is refused when the flow is parsed.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/opt/secrets,/srv/other-team",
        "default": "",
    },
    "allowed_local_roots": {
        "description": "When set, every local source, destination, quarantine and runtime "
        "read-only path must lie inside one of these folders (absolute paths separated by commas "
        "or new lines); the protected folders stay refused inside them. Empty: any local folder "
        "outside the protected ones.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/data,/srv/byo",
        "default": "",
    },
    "spec_folder": {
        "description": "The folder the BYO Flows page's flow editor writes flow specs to (New flow, "
        "Edit, Delete, Revert; history in its hidden .byo-history folder). It must be a folder a DAG "
        "file passes to build_dags(...): the factory leaves its marker .byo-factory.json there at each "
        "parse, and the page refuses to save until it sees one. A folder inside a git work tree gets a "
        "commit per save. Empty: the editor is read-only (it shows the YAML to commit instead).",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/opt/airflow/dags/byo/flows",
        "default": "",
    },
    "flow_editors": {
        "description": "Who may create flows on the page, in addition to the auth manager's edit "
        "access to DAGs (is_authorized_dag(method='PUT') without a DAG id): a comma list of user names "
        "and role:<name> entries (the simple auth manager's role, FAB's roles). Empty: every user the "
        "auth manager lets edit DAGs. Editing, deleting and reverting a flow need edit access to its DAG.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "alice,role:data-engineers",
        "default": "",
    },
    "editor_local_roots": {
        "description": "Absolute folders a flow made on the page may read from and write to locally "
        "(source, destination, file notification channels), separated by commas or new lines; the "
        "platform folders of the path policy stay refused inside them. Empty: flows made on the page "
        "may only use S3 and SFTP.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "/data/incoming,/data/out",
        "default": "",
    },
    "spec_git_push_conn_id": {
        "description": "An Airflow connection (type git or generic: host = the remote's URL, login and "
        "password for HTTPS) the flow editor pushes to after each commit, when [byo] spec_folder lies in "
        "a git work tree. Empty: commits stay local.",
        "version_added": "0.1.0",
        "type": "string",
        "example": "byo_specs_git",
        "default": "",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata; validated against Airflow's ``provider_info.schema.json`` in the tests."""
    return {
        "package-name": "airflow-byo",
        "name": "BYO Data Flows",
        "description": "Run your own Python function on every new file of a file system, in its own "
        "pinned virtualenv, exactly once per file, and report what happened.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://github.com/airflow-byo/airflow-byo#readme",
                "tags": ["software"],
            }
        ],
        "cli": ["airflow_byo.cli.definition.get_byo_cli_commands"],
        "notifications": ["airflow_byo.notifications.notifier.ByoFlowNotifier"],
        "task-decorators": [{"class-name": "airflow_byo.decorators.byo.byo_task", "name": "byo"}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_byo.operators.byo_flow",
                    "airflow_byo.operators.plan_batches",
                    "airflow_byo.operators.source_files",
                ],
            }
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_byo.sensors.new_files"]}],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_byo.triggers.new_files", "airflow_byo.triggers.s3_events"],
            }
        ],
        "plugins": [{"name": "byo_flows", "plugin-class": "airflow_byo.plugins.ByoFlowsPlugin"}],
        "config": {"byo": {"description": "Settings of the airflow-byo provider.", "options": _OPTIONS}},
    }
