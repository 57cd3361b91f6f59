"""Chinese notice templates (Jinja2), one per notice type: ``templates/<type>.j2``.

Each template has a ``subject`` block and a ``body`` block. Undefined variables
are errors (``StrictUndefined``): a notice missing what it should say is parked
with the reason, never sent with a blank where the organisation's name belongs.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2

from services.notifications.domain import RuleSet

TEMPLATES_DIR = Path(__file__).with_name("templates")


class TemplateProblem(Exception):
    """A template is missing, malformed, or needs data the event does not carry."""


def format_when(value) -> str:
    """An ISO date or timestamp as a reader expects it (Beijing time for timestamps)."""
    if value in (None, ""):
        return "（未设定）"
    text = str(value)
    try:
        if len(text) <= 10:
            return dt.date.fromisoformat(text).strftime("%Y年%m月%d日")
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone(dt.timedelta(hours=8)))
    return moment.strftime("%Y年%m月%d日 %H:%M")


def stars(value) -> str:
    if value is None:  # a first rating has no stars before it
        return "未评星级"
    n = int(value)
    return "★" * n + f"（{n}星）"


class Renderer:
    def __init__(self, rules: RuleSet, directory: Path | str | None = None):
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory or TEMPLATES_DIR)),
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
        labels = rules.labels
        self.env.filters.update(
            when=format_when, stars=stars,
            stage_name=lambda s: rules.stages.get(s, s),
            decision_name=lambda d: labels.get("decisions", {}).get(d, d),
            cause_name=lambda c: labels.get("rating_causes", {}).get(c, c),
            objection_decision=lambda d: labels.get("objection_decisions", {}).get(d, d),
            candidacy_stage=lambda s: labels.get("candidacy_stages", {}).get(s, s))

    def render(self, notice_type: str, context: dict) -> tuple[str, str]:
        """(subject, body) or ``TemplateProblem`` naming what went wrong."""
        try:
            template = self.env.get_template(f"{notice_type}.j2")
            ctx = template.new_context(context)
            subject = "".join(template.blocks["subject"](ctx)).strip()
            body = "".join(template.blocks["body"](ctx)).strip()
        except jinja2.TemplateNotFound:
            raise TemplateProblem(f"no template for notice type {notice_type!r}") from None
        except KeyError as exc:
            raise TemplateProblem(f"template {notice_type}.j2 lacks the block {exc}") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"template {notice_type}.j2: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise TemplateProblem(f"template {notice_type}.j2: {type(exc).__name__}: {exc}") \
                from None
        if not subject or not body:
            raise TemplateProblem(f"template {notice_type}.j2 rendered an empty subject or body")
        return subject, body
