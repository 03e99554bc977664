"""``MicroTaskWidget``: one narrow object task at a time from a labelling pipeline, answered in a click or a key.

Each task of a pipeline's human step (:func:`~dlabel_lab.labeling.pipelines.next_task`)
shows only what it needs: its one-sentence instruction, the crop of the frame
(or tile) it is about, scaled up so that small objects are visible, and the
model's boxes on it with their class and score. The buttons depend on the kind:

- ``verify_track``: Accept / Reject / Relabel (a class menu), and a stepper
  over the track's frames (up to eight) with the track's box on each.
- ``fix_box``: Accept / Reject, or move and resize the box (and click its
  label to give it the picked class) and Submit the fixed box.
- ``mark_missed``: draw a box around each object the model missed, then
  Submit (nothing drawn: nothing was missed); the model's boxes are context.

Skip is on every kind. Boxes are drawn with jupyter-bbox-widget's
``BBoxWidget`` (BSD-3-Clause, an anywidget): its boxes are in the displayed
crop's pixels, mapped back here to native pixels of the frame (rounded to
0.01 px, clipped to the task's region) before the answer goes to
:func:`~dlabel_lab.labeling.pipelines.answer_task`, which checks and stores it.
All logic of tasks and answers lives in the pipeline module; this is a view.

Keys, with the pointer over the widget (ipyevents; they reach the widget, not
the notebook nor the image): ``a`` accept (submit on ``mark_missed``), Enter
submit what is shown (accept on ``verify_track``; on ``fix_box`` a fix if the
box was changed, else accept), ``r`` reject, ``s`` skip, ``f`` submit the fixed
box, ``l`` relabel as the menu's class, ``1``-``9`` pick a class (the class of
new boxes, of the selected box, and of the Relabel menu), Delete remove the
selected drawn box, left and right arrows step over a track's frames.

Example:
    >>> w = MicroTaskWidget(store, pipeline_id, author="ana")  # doctest: +SKIP
    >>> w.accept_button.click()  # the shown task is answered; the next one is shown  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from jupyter_bbox_widget import BBoxWidget

from ..errors import ConfigError, MediaError, StoreCorrupt, UnknownLabel, UnknownRecord
from ..labeling import pipelines
from ._boxes import display_zoom, scaled_crop, shown_label, to_display, to_native
from ._common import NUMBER_KEYS, default_author, frame_png, handler, key_events, press_key, text_html

__all__ = ["MicroTaskWidget"]

_HIDDEN, _SHOWN = "none", None
_XYWH = ("x", "y", "width", "height")
_KEYS_HINT = {
    "verify_track": "a/enter accept, r reject, 1-9 class then l relabel, ←/→ frames, s skip",
    "fix_box": "drag the box to fix it; a accept, r reject, f/enter submit fixed box, 1-9 class, s skip",
    "mark_missed": "draw a box on each missed object; 1-9 class, delete remove box, a/enter submit, s skip",
}


class MicroTaskWidget(widgets.VBox):
    """Answer a pipeline's object micro-tasks one at a time: the instruction, the crop, the boxes, a few buttons.

    Args:
        store: The payload store the pipeline lives in.
        pipeline_id: What :func:`~dlabel_lab.labeling.pipelines.define_pipeline` returned.
        author: Who answers (default: the operating system's user name).
        step: Take tasks of this step only (default: any human step, in pipeline order).
        zoom: Scale of the shown crop (default: a whole factor to about
            :data:`~dlabel_lab.widgets._boxes.DISPLAY_WIDTH` px wide, see
            :func:`~dlabel_lab.widgets._boxes.display_zoom`).

    Attributes:
        task: The task shown (``None`` when none is left).
        bbox_widget: The ``BBoxWidget`` that shows the crop and the boxes (in the crop's shown pixels).
        scale: ``(x, y)`` shown pixels per native pixel of the task shown.
        frames: The task's crops (RGB), one per frame index.
        frame_slider: The stepper over a ``verify_track`` task's frames (position in ``task.frame_indices``).
        accept_button, reject_button, relabel_button, submit_button, skip_button: The actions (shown per kind).
        relabel_menu: The class a ``verify_track`` object is relabelled as.
        key_events: The ipyevents ``Event`` that delivers key presses to :meth:`press`.
        answered: ``(task_id, answer)`` per task answered here (skips included), in order.
        errors: Errors raised by the widget's own buttons and keys (also shown in ``output``).

    Example:
        >>> w = MicroTaskWidget(store, pipeline_id, author="ana", step="verify")  # doctest: +SKIP
        >>> w.reject_button.click()  # doctest: +SKIP
    """

    def __init__(
        self, store, pipeline_id: str, *, author: str | None = None, step: str | None = None, zoom: float | None = None
    ) -> None:
        if zoom is not None and (isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not
                                 math.isfinite(zoom) or zoom <= 0):
            raise ConfigError(f"zoom must be a positive number of screen pixels per native pixel, got {zoom!r}")
        self.store, self.pipeline_id, self.step, self.zoom = store, pipeline_id, step, zoom
        self.author = author or default_author()
        self.task: pipelines.Task | None = None
        self.frames: list[np.ndarray] = []
        self.scale = (1.0, 1.0)
        self.answered: list[tuple[str, dict]] = []
        self.errors: list[Exception] = []
        self._pngs: list[bytes] = []
        self._resetting = False
        self._shown_boxes: list[dict] = []  # the model's boxes as first shown on the current frame

        self.output = widgets.Output()
        self.progress = widgets.HTML()
        self.instruction = widgets.HTML()
        self.task_error = widgets.HTML()
        self.frame_slider = widgets.IntSlider(min=0, max=0, description="frame", readout=False)
        self.frame_label = widgets.HTML()
        self.stepper = widgets.HBox([self.frame_slider, self.frame_label])
        self.bbox_widget = BBoxWidget(hide_buttons=True)
        self.accept_button = widgets.Button(description="Accept (a)", icon="check", button_style="success")
        self.reject_button = widgets.Button(description="Reject (r)", icon="times", button_style="danger")
        self.relabel_menu = widgets.Dropdown(description="as", layout=widgets.Layout(width="180px"))
        self.relabel_button = widgets.Button(description="Relabel (l)", icon="tag")
        self.submit_button = widgets.Button(description="Submit (enter)", icon="paper-plane", button_style="primary")
        self.skip_button = widgets.Button(description="Skip (s)", icon="forward")
        self.keys_hint = widgets.HTML()
        self.status = widgets.HTML()
        for button, action in ((self.accept_button, self.accept), (self.reject_button, self.reject),
                               (self.relabel_button, self.relabel), (self.submit_button, self.submit),
                               (self.skip_button, self.skip)):  # fmt: skip
            button.on_click(handler(self, action))
        self.frame_slider.observe(handler(self, self._show_frame), names="value")
        self.bbox_widget.on_submit(handler(self, self.submit))
        self.bbox_widget.on_skip(handler(self, self.skip))
        self.bbox_widget.observe(handler(self, self._class_clicked), names="label")  # its row of classes
        super().__init__([
            self.progress, self.instruction, self.task_error, self.stepper, self.bbox_widget,
            widgets.HBox([self.accept_button, self.reject_button, self.relabel_menu, self.relabel_button,
                          self.submit_button, self.skip_button]),
            self.keys_hint, self.status, self.output,
        ])  # fmt: skip
        self.key_events = key_events(self)
        self._next()

    # -- actions (each a few lines that call the pipeline module) ---------------------------
    def accept(self) -> None:
        """Accept the model's object (``verify_track``, ``fix_box``) as it is.

        Example:
            >>> w.accept()  # what Accept (or key a) does  # doctest: +SKIP
        """
        self._answer({"verdict": "accept"}, kinds=("verify_track", "fix_box"))

    def reject(self) -> None:
        """Reject the model's object: it is not there or not an object (``verify_track``, ``fix_box``).

        Example:
            >>> w.reject()  # doctest: +SKIP
        """
        self._answer({"verdict": "reject"}, kinds=("verify_track", "fix_box"))

    def relabel(self, label: str | None = None) -> None:
        """Say the tracked object is of class ``label`` (default: the Relabel menu's class) (``verify_track``).

        Raises:
            UnknownLabel: ``label`` is not one of the task's classes.

        Example:
            >>> w.relabel("square")  # doctest: +SKIP
        """
        label = self.relabel_menu.value if label is None else label
        if self.task is not None and label not in self.task.classes:
            raise UnknownLabel(f"{label!r} is not one of the task's classes {list(self.task.classes)}")
        self._answer({"verdict": "relabel", "label": label}, kinds=("verify_track",))

    def submit(self) -> None:
        """Submit what is drawn: the missed boxes (``mark_missed``), the fixed box (``fix_box``; unchanged: accept).

        On ``verify_track`` it accepts. A box without a class, or a ``fix_box``
        answer with other than one box, is refused with a message; nothing is written.

        Example:
            >>> drawn = {"x": 40, "y": 40, "width": 64, "height": 48, "label": "circle"}
            >>> w.bbox_widget.bboxes = [*w.bbox_widget.bboxes, drawn]  # doctest: +SKIP
            >>> w.submit()  # doctest: +SKIP
        """
        if self.task is None:
            return
        kind = self.task.kind
        if kind == "verify_track":
            self.accept()
        elif kind == "mark_missed":
            drawn = [(n, b) for n, b in self._boxes() if not b.get("ref")]
            self._answer({"boxes": [{"box": self._native(b), "label": self._class_of(b, n)} for n, b in drawn]},
                         kinds=(kind,))
        else:
            self._answer(self._fix_answer(), kinds=(kind,))

    def draw_box(self, box: Sequence[float], label: str) -> None:
        """Draw a box on the shown crop as a person would with the mouse (native pixels ``[x1, y1, x2, y2]``).

        Used to script the widget (a tutorial, a simulated person); :meth:`submit` then sends it.

        Raises:
            UnknownLabel: ``label`` is not one of the task's classes.

        Example:
            >>> w.draw_box([12, 30, 26, 44], "circle"); w.submit()  # doctest: +SKIP
        """
        if self.task is None:
            return
        if label not in self.task.classes:
            raise UnknownLabel(f"{label!r} is not one of the task's classes {list(self.task.classes)}")
        shown = {**to_display([float(v) for v in box], self.task.region, self.scale), "label": label}
        self.bbox_widget.bboxes = [*self.bbox_widget.bboxes, shown]

    def give(self, answer: Mapping[str, Any]) -> None:
        """Give an answer through the widget's own controls, as a person would (a scripted or simulated one).

        ``{"verdict": "accept" | "reject" | "skip"}`` presses that button, ``{"verdict": "relabel", "label": c}``
        relabels, ``{"verdict": "fix", "box": ..., "label": c}`` moves the shown box there and submits it,
        ``{"boxes": [...]}`` draws each box (native pixels) and submits.

        Raises:
            ConfigError: An answer of none of these shapes.

        Example:
            >>> w.give(dl.TruthAnnotator(store, "clips/annotations.json").answer(w.task))  # doctest: +SKIP
        """
        verdict = answer.get("verdict") if isinstance(answer, Mapping) else None
        if verdict in ("accept", "reject", "skip"):
            {"accept": self.accept, "reject": self.reject, "skip": self.skip}[verdict]()
        elif verdict == "relabel":
            self.relabel(answer["label"])
        elif verdict == "fix" and self.task is not None:
            self.bbox_widget.bboxes = []
            self.draw_box(answer["box"], answer["label"])
            self.submit()
        elif isinstance(answer, Mapping) and "boxes" in answer:
            for box in answer["boxes"]:
                self.draw_box(box["box"], box["label"])
            self.submit()
        else:
            raise ConfigError(f"give takes an answer of answer_task's shapes, got {answer!r}")

    def skip(self) -> None:
        """Skip the shown task (logged as a skip, so it is not shown to this author again).

        Example:
            >>> w.skip()  # doctest: +SKIP
        """
        self._answer({"verdict": "skip"}, kinds=pipelines.TASK_KINDS)

    def pick_class(self, label: str) -> None:
        """Make ``label`` the class of new boxes, of the selected box if it may change, and of Relabel.

        Example:
            >>> w.pick_class("square")  # what key 2 does with classes circle, square, triangle  # doctest: +SKIP
        """
        if self.task is None:
            return
        if label not in self.task.classes:
            raise UnknownLabel(f"{label!r} is not one of the task's classes {list(self.task.classes)}")
        self.bbox_widget.label = label
        self.relabel_menu.value = label
        i, boxes = self.bbox_widget.selected_index, list(self.bbox_widget.bboxes)
        if self._editable(i, boxes):
            boxes[i] = {**boxes[i], "label": label}
            self.bbox_widget.bboxes = boxes

    def delete_selected(self) -> None:
        """Remove the selected box (one drawn here; on ``mark_missed`` the model's boxes stay).

        Example:
            >>> w.delete_selected()  # what Delete does  # doctest: +SKIP
        """
        i, boxes = self.bbox_widget.selected_index, list(self.bbox_widget.bboxes)
        if not self._editable(i, boxes):
            return
        self.bbox_widget.selected_index = -1
        self.bbox_widget.bboxes = boxes[:i] + boxes[i + 1 :]

    def step_frame(self, by: int) -> None:
        """Show the track's frame ``by`` positions on (``verify_track``).

        Example:
            >>> w.step_frame(1)  # what the right arrow does  # doctest: +SKIP
        """
        slider = self.frame_slider
        slider.value = min(max(slider.value + by, slider.min), slider.max)

    def press(self, key: str) -> bool:
        """Do what ``key`` stands for (see the module's keys); a key for a button that is off does nothing.

        Returns:
            Whether the key means something here.

        Example:
            >>> w.press("r")  # rejects, like a click on Reject  # doctest: +SKIP
            True
        """
        return self.task is not None and press_key(self._key_map(self.task), key)

    # -- answers ----------------------------------------------------------------------------
    def _editable(self, i: int, boxes: Sequence[Mapping[str, Any]]) -> bool:
        """Whether box ``i`` may change here: any on ``fix_box``, those drawn here on ``mark_missed``."""
        if self.task is None or not 0 <= i < len(boxes):
            return False
        return self.task.kind == "fix_box" or (self.task.kind == "mark_missed" and not boxes[i].get("ref"))

    def _key_map(self, task: pipelines.Task) -> dict[str, tuple[widgets.Widget, Callable]]:
        """Key -> (the control that must be on, the action), for the task's kind."""
        drawing = self.submit_button  # on when boxes may be drawn or changed (fix_box, mark_missed)
        classes = self.relabel_menu if task.kind == "verify_track" else drawing
        numbers = dict(zip(NUMBER_KEYS, task.classes, strict=False))  # the first nine classes
        accept = (drawing, self.submit) if task.kind == "mark_missed" else (self.accept_button, self.accept)
        enter = (self.accept_button, self.accept) if task.kind == "verify_track" else (drawing, self.submit)
        return {
            "a": accept, "enter": enter, "r": (self.reject_button, self.reject), "s": (self.skip_button, self.skip),
            "f": (drawing, self.submit), "l": (self.relabel_button, self.relabel),
            "delete": (drawing, self.delete_selected), "backspace": (drawing, self.delete_selected),
            "arrowleft": (self.frame_slider, lambda: self.step_frame(-1)),
            "arrowright": (self.frame_slider, lambda: self.step_frame(1)),
            **{key: (classes, functools.partial(self.pick_class, c)) for key, c in numbers.items()},
        }  # fmt: skip

    def _answer(self, answer: dict, *, kinds: Sequence[str]) -> None:
        if self.task is None or self.task.kind not in kinds:
            return
        task_id = self.task.task_id
        pipelines.answer_task(self.store, task_id, answer, author=self.author)
        self.answered.append((task_id, answer))
        self.status.value = text_html(f"answered {self.task.kind}: {_verdict(answer)}")
        self._next()

    def _boxes(self) -> list[tuple[int, dict]]:
        """The boxes shown, numbered from 1, without the ones of no area (a click is not a box)."""
        return [(i, dict(b)) for i, b in enumerate(self.bbox_widget.bboxes, 1)
                if abs(float(b.get("width", 0))) >= 1 and abs(float(b.get("height", 0))) >= 1]  # fmt: skip

    def _native(self, bbox: Mapping[str, Any]) -> list[float]:
        assert self.task is not None
        return to_native(bbox, self.task.region, self.scale)

    def _class_of(self, bbox: Mapping[str, Any], n: int) -> str:
        assert self.task is not None
        label = bbox.get("label") or ""
        if label in self.task.classes:
            return label
        model = next((b for b in self._shown_boxes if b["ref"] == bbox.get("ref")), None)
        if model is not None and label == model["label"]:
            return model["class"]  # a model box still showing its class and score
        raise ConfigError(
            f"box {n} has no class ({label!r}): pick one of {', '.join(self.task.classes)} (keys 1-9) and click the "
            "box's label, or delete the box; nothing was saved"
        )

    def _fix_answer(self) -> dict:
        boxes = self._boxes()
        if len(boxes) != 1:
            raise ConfigError(f"a fixed box is one box, {len(boxes)} are drawn: delete the others (select a box, "
                              "Delete); nothing was saved")
        n, bbox = boxes[0]
        label = self._class_of(bbox, n)
        model = self._shown_boxes[0] if self._shown_boxes else None
        if model is not None and label == model["class"] and all(bbox.get(k) == model[k] for k in _XYWH):
            return {"verdict": "accept"}  # submitted as shown: the model's box is right
        return {"verdict": "fix", "box": self._native(bbox), "label": label}

    # -- view -------------------------------------------------------------------------------
    def _next(self) -> None:
        self.task = pipelines.next_task(self.store, self.pipeline_id, author=self.author, step=self.step)
        self._show()

    def _show(self) -> None:
        task = self.task
        self.progress.value = self._progress_html()
        self.task_error.value = ""
        if task is None:
            self.instruction.value = text_html(
                f"all tasks done here: {len(self.answered)} answered"
                f" ({sum(a.get('verdict') == 'skip' for _, a in self.answered)} skipped)", tag="b")
            self.frames, self._pngs = [], []
            self._show_controls(None)
            return
        self.instruction.value = text_html(task.instruction, tag="b")
        self.keys_hint.value = text_html(f"keys, with the pointer over this widget: {_KEYS_HINT.get(task.kind, '')}")
        self.relabel_menu.options = list(task.classes)
        self.bbox_widget.classes = list(task.classes)
        self.bbox_widget.label = task.classes[0]  # as the page does when its classes change
        self.bbox_widget.view_only = task.kind == "verify_track"
        models = {b["label"] for b in task.boxes}  # Relabel offers a class other than the model's
        self.relabel_menu.value = next((c for c in task.classes if c not in models), task.classes[0])
        try:
            self.frames = list(pipelines.task_frames(self.store, task))
        except (MediaError, StoreCorrupt, UnknownRecord) as exc:  # this task only: show it, Skip goes on
            self.frames = []
            self.task_error.value = '<div style="color:#b00020">' + text_html(
                f"this task's frames cannot be shown: {type(exc).__name__}: {exc}. Skip it (s) to go on.", tag="span"
            ) + "</div>"
            self._show_controls(task.kind, readable=False)
            return
        h, w = self.frames[0].shape[:2]
        zoom = self.zoom or display_zoom(w, h)
        self._pngs = [frame_png(scaled_crop(f, zoom)) for f in self.frames]
        shown = scaled_crop(self.frames[0], zoom).shape
        self.scale = (shown[1] / w, shown[0] / h)
        self._show_controls(task.kind)
        self._resetting = True  # one redraw for the new task, not one per slider change
        try:
            self.frame_slider.value, self.frame_slider.max = 0, max(len(self.frames) - 1, 0)
        finally:
            self._resetting = False
        self._show_frame()

    def _show_frame(self) -> None:
        task = self.task
        if task is None or not self._pngs or self._resetting:
            return
        i = self.frame_slider.value
        frame_index = task.frame_indices[i]
        self.frame_label.value = text_html(f"frame {frame_index} ({i + 1} of {len(task.frame_indices)})", tag="span")
        self._shown_boxes = [
            {**to_display(b["box"], task.region, self.scale), "label": shown_label(b), "ref": b["ref"],
             "class": b["label"]}
            for b in task.boxes if int(b["frame_index"]) == int(frame_index)
        ]  # fmt: skip
        self.bbox_widget.selected_index = -1
        self.bbox_widget.image_bytes = self._pngs[i]
        self.bbox_widget.bboxes = [{k: v for k, v in b.items() if k != "class"} for b in self._shown_boxes]

    def _class_clicked(self) -> None:
        if self.task is not None and self.bbox_widget.label in self.task.classes:
            self.relabel_menu.value = self.bbox_widget.label

    def _show_controls(self, kind: str | None, *, readable: bool = True) -> None:
        shown = {
            "verify_track": (self.accept_button, self.reject_button, self.relabel_menu, self.relabel_button),
            "fix_box": (self.accept_button, self.reject_button, self.submit_button),
            "mark_missed": (self.submit_button,),
        }.get(kind or "", ())
        for control in (self.accept_button, self.reject_button, self.relabel_menu, self.relabel_button,
                        self.submit_button):  # fmt: skip
            control.layout.display = _SHOWN if control in shown else _HIDDEN
            control.disabled = control not in shown or not readable
        self.submit_button.description = "Submit fixed box (f)" if kind == "fix_box" else "Submit (enter)"
        self.skip_button.disabled = kind is None
        self.frame_slider.disabled = kind != "verify_track" or not readable
        self.skip_button.layout.display = _HIDDEN if kind is None else _SHOWN
        self.keys_hint.layout.display = _HIDDEN if kind is None else _SHOWN
        self.bbox_widget.layout.display = _SHOWN if kind is not None and readable else _HIDDEN
        self.stepper.layout.display = _SHOWN if kind == "verify_track" and readable and len(self.frames) > 1 \
            else _HIDDEN
        if kind is None or not readable:
            self.bbox_widget.bboxes = []

    def _progress_html(self) -> str:
        return text_html(_progress_line(pipelines.pipeline_status(self.store, self.pipeline_id), self.task), tag="span")


def _verdict(answer: Mapping[str, Any]) -> str:
    if "boxes" in answer:
        return f"{len(answer['boxes'])} missed box(es)"
    return " ".join(str(answer[k]) for k in ("verdict", "label") if k in answer)


def _progress_line(status, task) -> str:
    """``task 3 of 12 · step verify · 5 open`` for the shown task's step; per step what is left when none is shown.

    ``status`` is :func:`~dlabel_lab.labeling.pipelines.pipeline_status`'s table.
    """
    if task is None:
        return " · ".join(f"step {r['step']}: {r['answered']} answered, {r['skipped']} skipped, {r['open']} open"
                          for r in status.to_dict("records"))  # fmt: skip
    rows = status[status["step"] == task.step]
    if rows.empty:
        return f"step {task.step}"
    r = rows.iloc[0]
    tasks, open_ = int(r["tasks"]), int(r["open"])
    return f"task {min(tasks - open_ + 1, tasks)} of {tasks} · step {task.step} · {open_} open"
