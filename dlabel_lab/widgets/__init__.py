"""ipywidgets views of the labelling loop; each callback delegates to the package.

Example:
    >>> from dlabel_lab.widgets import ScoringWidget, DatasetBrowser, AttributionViewer, RetrainPanel
"""

from .attribution import AttributionViewer, reject_params
from .browser import DatasetBrowser
from .retrain import LiveTrainingCallback, RetrainPanel, lineage_html
from .scoring import ScoringWidget

__all__ = [
    "AttributionViewer",
    "DatasetBrowser",
    "LiveTrainingCallback",
    "RetrainPanel",
    "ScoringWidget",
    "lineage_html",
    "reject_params",
]
