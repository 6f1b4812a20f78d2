"""scikit-learn's own check of an estimator's parameter values, without fitting it.

scikit-learn (1.2 and later) declares the values each parameter of its estimators takes
(`_parameter_constraints`) and checks them at the start of `fit` with the private
`BaseEstimator._validate_params`; there is no public way to run that check alone (`clone`,
`get_params` and `set_params` do not look at values). Calling it before any compute starts
turns a fit that would fail on a Dask worker seconds later into an error in the flow process.
"""

from __future__ import annotations

from typing import Any

_FIRST_RELEASE = (1, 2)  # `_validate_params` and `_parameter_constraints` appeared in 1.2


def _supported() -> bool:
    import sklearn

    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    return (major, minor) >= _FIRST_RELEASE


def parameter_error(model: Any) -> str | None:
    """scikit-learn's message for the first parameter of `model` whose value its rules refuse.

    None when every value is allowed, or when `model` declares no rules (a third-party
    estimator, or a scikit-learn release before 1.2): then `fit` remains the check.

    >>> from sklearn.linear_model import LogisticRegression
    >>> parameter_error(LogisticRegression(C=-1))
    "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 instead."
    >>> parameter_error(LogisticRegression(C=2.0)) is None
    True
    """
    if not _supported() or not hasattr(type(model), "_parameter_constraints"):
        return None
    validate = getattr(model, "_validate_params", None)
    if validate is None:
        return None
    try:
        validate()
    except (ValueError, TypeError) as exc:  # scikit-learn's InvalidParameterError is both
        return str(exc)
    return None
