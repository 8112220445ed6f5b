"""Verification of the record, as a page: run ``verify``, take and download checkpoints."""

from __future__ import annotations

import json

from flask import Blueprint, Response, flash, redirect, render_template, url_for

from admin.security import REVIEWERS, roles
from admin.services import record_access, services
from episodes.verification import export_checkpoint, take_checkpoint, verify

bp = Blueprint("verification", __name__, url_prefix="/audit/verification")


@bp.route("/")
@roles(*REVIEWERS)
def index():  # noqa: ANN201
    return render_template("audit/verification.html", report=None)


@bp.route("/", methods=["POST"])
@roles(*REVIEWERS)
def run():  # noqa: ANN201
    # Walks every stream: a page a reviewer asks for, not one that runs on every visit.
    report = verify(services().episodes)
    return render_template("audit/verification.html", report=report), 200 if report.intact else 409


@bp.route("/checkpoint", methods=["POST"])
@roles(*REVIEWERS)
def checkpoint():  # noqa: ANN201
    made = take_checkpoint(services().episodes)
    flash(f"Checkpoint {made.id} taken: {made.streams} streams, {made.events} events. "
          "Download it and keep it outside the database.", "success")
    return redirect(url_for("verification.index"), 303)


@bp.route("/checkpoint.json")
@roles(*REVIEWERS)
def download():  # noqa: ANN201
    try:
        document = export_checkpoint(services().episodes)
    except LookupError as missing:
        flash(str(missing), "error")
        return redirect(url_for("verification.index"), 303)
    record_access("export", detail=f"checkpoint {document['id']} (stream heads, no patient data)")
    return Response(
        json.dumps(document, indent=1), mimetype="application/json",
        headers={"Content-Disposition": f"attachment; filename=checkpoint-{document['id']}.json"},
    )
