"""The evidence report: one self-contained HTML file a person can hand to a platform.

It holds the annotated image (a data URI), the SHA-256 of the uploaded file, the time, the
bundle and controller versions, every agent's vote and trust weight, the threshold and what it
means, and the detector's measured accuracy and limits taken from the bundle's own metrics.
Nothing in it is fetched from anywhere when it is opened.
"""

from __future__ import annotations

import html
from typing import Any

LIMITS = (
    "A verdict is a statistical estimate, not proof: it should be weighed with other evidence by a person.",
    "The models were trained on the face crops named under 'What it was trained on'; faces unlike them "
    "(other forgery methods, GAN portraits, edited photos, heavy compression, screenshots of screenshots, "
    "filters, very small, dark or turned-away faces) are judged less reliably than the measured rates suggest.",
    "The probability is calibrated on the validation split; it says how often faces given this score were "
    "fake there, not how likely this particular file is to be fake in every setting.",
)


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{100.0 * float(value):.0f} %"


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def accuracy_statement(info: dict[str, Any]) -> list[str]:
    """Plain sentences on how well the bundle measured, from `Ensemble.model_info()`-style info.

    Uses the controller's fit metrics (``manifest.extras.controller.fitted_on``) for the ensemble
    and each agent's ``val_metrics``; says so plainly when the bundle records none.
    """
    manifest = info.get("manifest") or {}
    lines = []
    fitted = _get(manifest, "extras", "controller", "fitted_on") or {}
    # fit-controller scores the ensemble on the val groups it held out (the replay set); older
    # controllers recorded metrics on the cases they were fitted on.
    held_out = "metrics_replay" in fitted
    metrics = (fitted.get("metrics_replay") if held_out else fitted.get("metrics")) or {}
    if metrics.get("accuracy") is not None:
        cases = fitted.get("replay_cases") if held_out else fitted.get("cases")
        on = f"{cases} labelled validation faces" if cases else "its validation faces"
        auc = metrics.get("roc_auc")
        wrong = 1.0 - float(metrics["accuracy"])
        lines.append(
            f"On {on} the ensemble was right {_pct(metrics['accuracy'])} of the time"
            + (f" (ROC AUC {float(auc):.2f}, where 0.5 is chance and 1.0 is perfect)" if auc is not None else "")
            + (f": about 1 answer in {round(1 / wrong)} was wrong." if wrong > 0 else ".")
        )
    else:
        lines.append("This model bundle records no measured accuracy for the ensemble: its error rate is unknown.")
    for name, agent in sorted((info.get("agents") or {}).items()):
        vm = agent.get("val_metrics") if isinstance(agent, dict) else None
        if vm and vm.get("accuracy") is not None:
            auc = vm.get("auc", vm.get("roc_auc"))
            lines.append(f"Agent {name} alone: right {_pct(vm['accuracy'])} of the time on {vm.get('n', '?')} "
                         f"validation faces" + (f" (ROC AUC {float(auc):.2f})." if auc is not None else "."))
    return lines


# Where a training manifest's name says what the faces were; anything else is named as it is.
KNOWN_SOURCES = (
    ("dfdc", "face crops cut from the Deepfake Detection Challenge (DFDC) videos: face swaps in video of paid actors"),
    ("gan", "GAN-generated portraits"),
    ("lfw", "face swaps made from Labeled Faces in the Wild photos"),
)


def trained_on(info: dict[str, Any]) -> str:
    """One sentence on what the detector was trained on, from the bundle's manifest."""
    manifest = info.get("manifest") or {}
    description = manifest.get("description") or {}
    source = str(description.get("data") or description.get("manifest") or "")
    if not source:
        return "What the detector was trained on is not recorded in this model bundle."
    kinds = [text for key, text in KNOWN_SOURCES if key in source.lower()]
    rows = description.get("n_rows")
    count = f"{int(rows):,} " if isinstance(rows, (int, float)) else ""
    what = "; ".join(kinds) if kinds else f"the faces listed in {source}"
    return f"Trained on {count}{'labelled images: ' if count else ''}{what}."


def error_rates(info: dict[str, Any]) -> str:
    """The model card's error rates in one sentence (held-out val), or "" when not measured."""
    val = _get(info, "borderline", "val") or {}
    if val.get("false_alarm") is None or val.get("miss") is None:
        return ""
    return (f"On {val['cases']} held-out validation faces it wrongly called {_pct(val['false_alarm'])} of real faces "
            f"fake (false alarms) and missed {_pct(val['miss'])} of fakes; {_pct(val['withheld'])} were too close "
            "to call and answered \"can't tell\".")


def threshold_sentence(p_fake: float, threshold: float) -> str:
    """``the ensemble gives 83 % that this face is fake; it calls a face fake above 58 %``."""
    return (f"the ensemble gives {_pct(p_fake)} that this face is fake; "
            f"it calls a face fake above {_pct(threshold)}")


def _verdict_text(label: str, reason: str = "") -> str:
    if label == "uncertain":
        return "can't tell" + (f" ({reason})" if reason else "")
    return {"fake": "FAKE", "real": "REAL"}.get(label, label or "undecided")


def _votes_table(votes: dict[str, dict[str, float]], thresholds: dict[str, float] | None = None) -> str:
    """Each agent's score against its own threshold, and its share of this decision."""
    thresholds = thresholds or {}
    total = sum(max(float(v.get("weight", 0.0)), 0.0) for v in votes.values()) or 1.0
    rows = []
    for agent, v in sorted(votes.items()):
        own = thresholds.get(agent)
        says = "" if own is None else ("fake" if float(v.get("p_fake", 0.0)) >= own else "real")
        rows.append(f"<tr><td>{html.escape(agent)}</td><td>{_pct(v.get('p_fake'))}</td><td>{_pct(own)}</td>"
                    f"<td>{says}</td><td>{_pct(max(float(v.get('weight', 0.0)), 0.0) / total)}</td></tr>")
    return ("<table><tr><th>agent</th><th>its fake score</th><th>its own threshold</th><th>its vote</th>"
            "<th>share of this decision</th></tr>" + "".join(rows) + "</table>" if rows else "<p>No agent voted.</p>")


# Side of a face crop and of a Grad-CAM tile in the report: smaller maps cannot be read.
TILE_PX = 224


def _maps_block(face: dict[str, Any], crop_uri: str | None) -> str:
    """The face crop beside its agents' heat maps at full size, and why any agent's is missing."""
    esc = html.escape
    tiles = [f'<figure><img class="map" src="{esc(uri)}" alt="heat map of {esc(agent)}" style="min-width:{TILE_PX}px">'
             f"<figcaption>{esc(agent)}</figcaption></figure>" for agent, uri in sorted((face.get("heatmaps") or {}).items())]
    notes = [f'<p class="map-note">{esc(str(note))}</p>' for _, note in sorted((face.get("heatmap_notes") or {}).items())]
    if not tiles and not notes:
        return ""
    if crop_uri and tiles:
        tiles.insert(0, f'<figure><img class="crop" src="{esc(crop_uri)}" alt="the face" width="{TILE_PX}">'
                        "<figcaption>the face</figcaption></figure>")
    return ('<div class="maps"><h4>Where the agents looked</h4>'
            + (f'<div class="tiles">{"".join(tiles)}</div>' if tiles else "") + "".join(notes) + "</div>")


def _face_section(face: dict[str, Any], title: str, thresholds: dict[str, float] | None = None,
                  crop_uri: str | None = None) -> str:
    p, thr = face.get("p_fake"), face.get("threshold")
    label = face.get("label") or face.get("verdict", "")
    parts = [f"<h3>{html.escape(title)}: {html.escape(_verdict_text(label, face.get('reason', '')))}</h3>"]
    reason = str(face.get("reason", ""))
    if p is not None and thr is not None and label != "uncertain":
        parts.append(f"<p>{html.escape(threshold_sentence(p, thr)).capitalize()}.</p>")
    elif p is not None and reason.startswith("borderline"):
        parts.append(f"<p>The fake score is {_pct(p)}, too close to the threshold ({_pct(thr)}) to be a verdict.</p>")
    if face.get("degraded"):
        parts.append("<p>Some agents did not vote: " + html.escape(", ".join(face.get("missing_agents", []))) + ".</p>")
    parts.append(_votes_table(face.get("votes") or {}, thresholds))
    parts.append(_maps_block(face, crop_uri))
    return "\n".join(parts)


def build_report(record: dict[str, Any], info: dict[str, Any], annotated_png_uri: str, *,
                 face_crops: dict[int, str] | None = None) -> str:
    """The report's HTML.

    Args:
        record: what the page answered: ``kind`` ("image"/"video"), ``name``, ``sha256``,
            ``size``, ``received`` (ISO time), ``result`` (the page's JSON for the answer).
        info: `Ensemble.model_info()`-style dict (bundle manifest, agents, controller).
        annotated_png_uri: the annotated image (or the video's deciding frame) as a data URI.
        face_crops: face index -> its crop as a data URI, shown beside that face's heat maps.
    """
    result = record["result"]
    esc = html.escape
    rows = [
        ("name", "File name", record.get("name") or "(pasted image)"),
        ("sha256", "SHA-256 of the uploaded file", record["sha256"]),
        ("size", "File size", f"{record['size']} bytes"),
        ("received", "Received (UTC)", record["received"]),
        ("request-id", "Request id", result.get("request_id", "")),
        ("bundle", "Model bundle version", result.get("bundle_version") or info.get("bundle_version", "")),
        ("controller", "Controller (trust table) version",
         result.get("controller_version") or info.get("controller_version", "")),
    ]
    meta = "".join(f'<tr><th>{esc(title)}</th><td id="{key}">{esc(str(value))}</td></tr>' for key, title, value in rows)
    body: list[str] = []
    thresholds = {name: a.get("threshold") for name, a in (info.get("agents") or {}).items() if isinstance(a, dict)}
    disputed = record.get("disputed")
    if disputed:
        which = "" if disputed.get("face_index") is None else f" for face #{int(disputed['face_index'])}"
        body.append(f'<h2 id="disputed">Disputed</h2><p>On {esc(str(disputed["time"]))} (UTC) the person who sent this '
                    f"file told the detector the answer{which} is wrong: they say it is "
                    f"{esc(str(disputed['label']).upper())}. "
                    "Their correction is stored for review; it did not change this answer.</p>")
    if record["kind"] == "video":
        clip = result.get("verdict", "")
        shown = result.get("shown") or {}
        at = f" (at {float(shown['time_s']):.1f} s)" if shown.get("time_s") is not None else ""
        body.append(f"<h2>Clip verdict: {esc(_verdict_text(clip, result.get('reason', '')))}</h2>"
                    f"<p>{esc(result.get('explanation', ''))} {result.get('frames_sampled', 0)} frames were checked; "
                    f"the image shows a frame{esc(at)} of the deciding face that agrees with this answer.</p>"
                    f"<p>The rule: {esc(result.get('rule', ''))}</p>")
        for track in result.get("tracks", []):
            body.append(_face_section({**track, "label": track.get("verdict")},
                                      f"Face track {track['track']} ({track['frames']} frames)", thresholds))
    elif not result.get("faces"):
        body.append(f"<h2>No face found</h2><p>{esc(result.get('no_face_reason', ''))}</p>")
    else:
        for face in result["faces"]:
            body.append(_face_section(face, f"Face #{face['index']}", thresholds,
                                      (face_crops or {}).get(int(face["index"]))))
    threshold = info.get("threshold")
    meaning = ("<p>The threshold: a face whose probability of being fake is at or above "
               f"{_pct(threshold) if threshold is not None else 'the threshold shown with it'} is called fake, "
               "below it real. It was chosen on validation data to balance missed fakes against real faces "
               "wrongly called fake. A score too close to the threshold is answered \"can't tell\" instead. "
               "The trust weight is how much the controller relies on each agent for this decision.</p>")
    accuracy = "".join(f"<li>{esc(line)}</li>" for line in [error_rates(info), *accuracy_statement(info)] if line)
    limits = "".join(f"<li>{esc(line)}</li>" for line in LIMITS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>fakeface evidence report {esc(record['sha256'][:12])}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}
table{{border-collapse:collapse;margin:.5rem 0}}td,th{{border:1px solid #bbb;padding:.25rem .6rem;text-align:left;vertical-align:top}}
td{{font-family:ui-monospace,monospace;word-break:break-all}}img{{max-width:100%;border:1px solid #888}}
.tiles{{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-start}}figure{{margin:0;text-align:center}}
.map-note{{color:#555;margin:.2rem 0}}
</style></head><body>
<h1>Deepfake detector: evidence report</h1>
<p>Made by fakeface, an ensemble of image classifiers that judges each face separately.</p>
<table>{meta}</table>
<img alt="the uploaded image with a box around every face and its verdict" src="{annotated_png_uri}">
{''.join(body)}
<h2>What the numbers mean</h2>{meaning}
<h2>Measured accuracy</h2><ul>{accuracy}</ul>
<h2>What it was trained on</h2><p id="trained-on">{esc(trained_on(info))}</p>
<h2>Limits</h2><ul>{limits}</ul>
</body></html>
"""

