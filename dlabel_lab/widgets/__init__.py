"""ipywidgets views of the labelling loop; each callback delegates to the package.

Example:
    >>> from dlabel_lab.widgets import ScoringWidget, LabelQueue, DatasetBrowser, AttributionViewer, RetrainPanel
    >>> from dlabel_lab.widgets import MicroTaskWidget
"""

from .attribution import AttributionViewer, reject_params
from .browser import DatasetBrowser
from .microtask import MicroTaskWidget
from .queue import LabelQueue
from .retrain import LiveTrainingCallback, RetrainPanel, lineage_html
from .scoring import ScoringWidget

__all__ = [
    "AttributionViewer",
    "DatasetBrowser",
    "LabelQueue",
    "LiveTrainingCallback",
    "MicroTaskWidget",
    "RetrainPanel",
    "ScoringWidget",
    "lineage_html",
    "reject_params",
]
