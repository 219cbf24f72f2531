"""airflow-byo: run your own Python function on every new file, exactly once, in its own virtualenv."""

# Keep this module free of imports: the child runtime ships ``airflow_byo/runtime`` into
# virtualenvs that have no Airflow, and Python imports this file first.
__version__ = "0.1.0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from airflow_byo.assets import new_files_asset as new_files_asset


def __getattr__(name: str) -> object:
    # Lazy, so that importing the package stays free of imports (see above).
    if name == "new_files_asset":
        from airflow_byo.assets import new_files_asset

        return new_files_asset
    raise AttributeError(f"module 'airflow_byo' has no attribute {name!r}")
