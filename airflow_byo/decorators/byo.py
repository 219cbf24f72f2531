"""
``@task.byo``: the decorated function is the flow's processor.

.. code-block:: python

    @task.byo(source="/data/in", include=["*.csv"], destination="/data/out", packages="unidecode==1.3.8")
    def clean(file, ctx, *, country="NL"):
        ...

    clean(country="BE")   # call arguments become custom_code args/kwargs

Decorator arguments are :class:`~airflow_byo.operators.byo_flow.ByoFlowOperator`'s. The function's
source is shipped to the flow's virtualenv, so it imports what it needs inside its body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import task_decorator_factory

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.operators.byo_flow import ByoFlowOperator

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

__all__ = ["byo_task"]


class _ByoDecoratedOperator(ByoFlowOperator):
    """A ByoFlowOperator whose processor is the decorated function; call arguments are custom_code."""

    custom_operator_name = "@task.byo"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        multiple_outputs: bool = False,
        **kwargs: Any,
    ) -> None:
        self.python_callable = python_callable
        runtime_config = kwargs.pop("runtime_config", None)
        if op_args or op_kwargs:
            config = dict(runtime_config or {}) if not isinstance(runtime_config, str) else None
            if config is None or "custom_code" in config:
                raise ByoConfigError(
                    f"{python_callable.__name__}(...) was called with arguments and runtime_config also "
                    "sets custom_code (or is a JSON string): give the arguments one way"
                )
            config["custom_code"] = {"args": list(op_args or ()), "kwargs": dict(op_kwargs or {})}
            runtime_config = config
        super().__init__(processor=python_callable, runtime_config=runtime_config, **kwargs)


def byo_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """
    Turn a processor function into a BYO flow task (registered as ``@task.byo``).

    :param python_callable: the processor, ``(file, ctx, *args, **kwargs)``.
    :param kwargs: :class:`~airflow_byo.operators.byo_flow.ByoFlowOperator` arguments.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_ByoDecoratedOperator,
        **kwargs,
    )
