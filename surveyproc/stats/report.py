"""Write the aggregates as tables, figures and one HTML report beside the catalog.

Layout of ``<output>/report/``: ``index.html`` (self-contained: inline CSS, no
scripts or fonts from the network; it links the PNGs next to it), ``*.png``,
and the tables as CSV/JSON (``summary.json`` holds every scalar statistic).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..catalog.schema import ModelColumns
from ..errors import InvalidParameterError
from ..flags import MEANINGS
from ..kinds import ReportContext, get_kind
from ..models.checkpoint import Checkpoint
from ..store import SurveyStore
from .aggregate import Aggregates, with_unit
from .calibration import (
    BIAS_MARGIN,
    COVERAGE_MARGIN_68,
    COVERAGE_MARGIN_95,
    FEW_OBJECTS,
    MIN_BIN_OBJECTS,
    SIGMA_NMAD_CONVENTION,
    off_calibration,
)
from .features import FeatureStatistics
from .figures import (
    bpt_figure,
    calibration_figure,
    causal_figure,
    correlation_figure,
    estimate_figure,
    explained_figure,
    frequency_figure,
    local_tests_figure,
    montage_figure,
    pit_figure,
)

__all__ = ["COLUMN_MEANINGS", "composite", "exemplar_images", "write_report"]

log = logging.getLogger(__name__)

TOP_FEATURES = 6
CORRELATION_FEATURES = 24
#: Columns of the calibration CSV that the HTML table leaves out (the group's name says them).
BIN_COLUMNS = ("binned_by", "bin_low", "bin_high")

#: What every column of the report's tables means, shown under each table.  Columns
#: named ``<prefix>_<value>`` (outlier fractions) are found by their prefix.
COLUMN_MEANINGS = {
    # quality flags
    "flag": "quality flag set on the catalog row",
    "objects": "catalog rows carrying the flag",
    "share": "those rows as a share of all rows",
    "meaning": "what the flag says about the estimate",
    # sparse features
    "feature": "index of the feature in the sparse layer",
    "frequency": "share of galaxies in whose top-k the feature is",
    "mean_activation": "mean activation over the galaxies where it is active",
    "max_activation": "largest activation in the catalog",
    "mean_over_all": "mean activation over all galaxies (zero where inactive)",
    "target": "predicted quantity",
    "m": "number of most frequent features used",
    "explained_variance": ("share of the target's variance explained by a least-squares fit "
                           "on the m most frequent features' activations (R^2)"),
    # calibration
    "group": "galaxies the row covers: all, or a bin of magnitude or of the true value",
    "n": "galaxies in the group with a known truth and estimate",
    "bias_mean": "mean error of the point estimate",
    "bias_median": "median error of the point estimate",
    "sigma_nmad": "robust scatter of the error: 1.4826 x median(|e - median(e)|)",
    "outlier_frac": "share of galaxies whose |error| exceeds the threshold in the name",
    "ks": "Kolmogorov-Smirnov distance of the PIT values from uniform (0 = calibrated)",
    "cvm": "Cramer-von Mises statistic of the PIT values against uniform",
    "ad": "Anderson-Darling k-sample statistic of the PIT values against uniform (qp's)",
    "crps": "mean continuous ranked probability score, in the target's unit (lower is better)",
    "coverage_68": "share of truths inside the PDF's central 68 % interval (nominal 0.68)",
    "coverage_95": "share of truths inside the PDF's central 95 % interval (nominal 0.95)",
    "outside_grid": "galaxies whose truth lies outside the PDF's grid",
    "note": (f"'{FEW_OBJECTS}' under {MIN_BIN_OBJECTS} galaxies (left out of figures and "
             "checks), else what is off calibration"),
}


def composite(image: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """(bands, h, w) pixels -> (h, w, 3) uint8 colour image (Lupton et al. 2004 asinh)."""
    from astropy.visualization import make_lupton_rgb

    order = [b for b in ("i", "r", "g") if b in bands]
    if len(order) < 3:
        picks = [len(bands) - 1, len(bands) // 2, 0]
    else:
        picks = [bands.index(b) for b in order]
    planes = [np.nan_to_num(image[p].astype(np.float64)) for p in picks]
    scale = max(float(np.percentile(np.concatenate([p.ravel() for p in planes]), 99.5)), 1e-6)
    return make_lupton_rgb(*planes, minimum=0.0, stretch=scale / 4, Q=8)


def exemplar_images(store: SurveyStore, exemplars: dict[int, list[int]]
                    ) -> dict[int, list[tuple[int, np.ndarray]]]:
    """(object id, colour cutout) of each feature's exemplar galaxies, found by object id
    with Dask."""
    import dask.array as da

    wanted = sorted({i for ids in exemplars.values() for i in ids})
    if not wanted:
        return {}
    ids = da.from_zarr(store.array("object_id"))
    rows = da.flatnonzero(da.isin(ids, np.array(wanted))).compute()
    found = dict(zip(np.asarray(store.array("object_id").get_coordinate_selection(rows)).tolist(),
                     rows.tolist(), strict=True))
    images = store.array("images")
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for feature, object_ids in exemplars.items():
        out[feature] = [(i, composite(np.asarray(images[found[i]]), store.bands))
                        for i in object_ids if i in found]
    return out


def column_meaning(column: str, meanings: Mapping[str, str] | None = None) -> str:
    """The meaning of ``column`` in ``meanings`` (a table's own), else its
    :data:`COLUMN_MEANINGS` entry (or its prefix's), else ''."""
    if meanings and column in meanings:
        return meanings[column]
    if column in COLUMN_MEANINGS:
        return COLUMN_MEANINGS[column]
    prefix = column.rsplit("_", 1)[0]
    return COLUMN_MEANINGS.get(prefix, "") if prefix != column else ""


def _table(frame: pd.DataFrame, digits: int = 4,
           meanings: Mapping[str, str] | None = None) -> str:
    """The frame as an HTML table, followed by what each of its columns means (from
    ``meanings``, for columns only this table has, or :data:`COLUMN_MEANINGS`)."""
    columns = [str(c) for c in frame.columns]
    unexplained = [c for c in columns if not column_meaning(c, meanings)]
    if unexplained:
        log.warning("report table columns without a meaning: %s", ", ".join(unexplained))
    glossary = "".join(
        f"<dt>{html.escape(c)}</dt><dd>{html.escape(column_meaning(c, meanings))}</dd>"
        for c in columns if column_meaning(c, meanings))
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}g}", border=0,
                          classes="t", na_rep="")
    return f'{table}<dl class="columns">{glossary}</dl>'


def _img(name: str, alt: str) -> str:
    return f'<figure><img src="{html.escape(name)}" alt="{html.escape(alt)}"></figure>'


def write_report(aggregates: Aggregates, store: SurveyStore, out_dir: Path,
                 checkpoints: dict[str, Checkpoint], catalog_url: str, title: str) -> Path:
    """Write tables, figures and ``index.html`` into ``out_dir``; return the HTML path.

    Per model: its sparse-feature section (if it has sparse columns), then its
    kind's own section (``ModelKind.report_section``, given the model's
    checkpoint from ``checkpoints`` when there is one); then the calibration
    of every target.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    body: list[str] = []
    summary: dict[str, Any] = {"rows": aggregates.rows, "seconds": round(aggregates.seconds, 2),
                               "catalog": catalog_url, "store": store.url, "features": {},
                               "models": {}, "calibration": {},
                               "sigma_nmad": SIGMA_NMAD_CONVENTION}
    parts = aggregates.parts
    status = ""
    if parts is not None and not parts.complete:
        status = (f'<p class="partial"><b>partial: {len(parts.urls)} of {parts.n_shards} '
                  "shards</b> (the catalog is unfinished; these statistics cover its "
                  "committed shards only)</p>")
        summary["partial"] = {"shards": len(parts.urls), "of": parts.n_shards}
    body.append(_flags_section(aggregates, summary))
    for model in aggregates.spec.models:
        stats = aggregates.features.get(model.name)
        if stats is not None:
            body.append(_feature_section(model.name, stats, store, out_dir, summary))
        body.append(_kind_section(model, aggregates, checkpoints.get(model.name), out_dir,
                                  summary, stats))
    spec = aggregates.spec
    for target in spec.estimated_targets:
        names = [e for e, (_, t) in spec.estimates.items()
                 if t == target and e in aggregates.calibration]
        if len(names) > 1:
            body.append(_comparison_section(target, names, aggregates, out_dir, summary))
        for name in names:
            body.append(_calibration_section(name, aggregates.calibration[name], aggregates,
                                             out_dir, summary))
    if aggregates.causal is not None:
        body.append(_causal_section(aggregates.causal, out_dir, summary))
    if aggregates.local_tests is not None:
        body.append(_local_tests_section(aggregates.local_tests, out_dir, summary))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    page = _PAGE.format(title=html.escape(title), rows=aggregates.rows,
                        catalog=html.escape(catalog_url), store=html.escape(store.url),
                        status=status, body="\n".join(body))
    path = out_dir / "index.html"
    path.write_text(page)
    return path


def _causal_section(graph: dict[str, Any], out: Path, summary: dict[str, Any]) -> str:
    """The PC graph over the store's catalog-level variables, edges by bootstrap frequency."""
    summary["causal"] = graph
    edges = sorted(graph["edges"], key=lambda e: -(e["bootstrap_frequency"] or 0.0))
    frame = pd.DataFrame([{"edge": (" -> ".join(e["direction"]) if e["direction"]
                                    else " - ".join(e["pair"])),
                           "in the PC graph": "yes" if e["in_graph"] else "no",
                           "bootstrap frequency": e["bootstrap_frequency"]} for e in edges])
    meanings = {"edge": "a pair of variables PC or a resample found adjacent; an arrow where "
                        "PC oriented it (cause -> effect)",
                "in the PC graph": "whether the fit on the whole sample has the edge",
                "bootstrap frequency": "share of bootstrap resamples whose graph has the edge"}
    figure = causal_figure(graph, out, "causal_graph.png")
    dropped = "".join(f"<li>{html.escape(name)}: {html.escape(why)}</li>"
                      for name, why in graph.get("dropped", {}).items())
    dropped = f"<p>Left out:</p><ul>{dropped}</ul>" if dropped else ""
    return ("<h2>Causal discovery</h2><p>PC (causal-learn, Fisher-z tests) over "
            f"{', '.join(graph['variables'])}, on a random sample of the survey; the frequency "
            "is the share of bootstrap resamples (Dask tasks) whose graph has the edge. "
            "Fisher-z assumes linear relations, and latent causes (unmeasured quantities) "
            "make variables adjacent that no measured one separates.</p>"
            + dropped + _img(figure, "causal graph") + _table(frame, 3, meanings))


def _local_tests_section(result: dict[str, Any], out: Path, summary: dict[str, Any]) -> str:
    """Per query: the local correlations' distribution against shuffles, the share of
    dependent neighbourhoods and the verdict, unconditional and given the condition."""
    summary["local_tests"] = result
    rows = []
    for test in result["tests"]:
        for label, t in (("", test), (f" | {result['condition']}", test.get("conditional"))):
            if t is None:
                continue
            rows.append({"query": test["query"] + label,
                         "mean r": t["mean_correlation"], "mean |r|": t["mean_abs_correlation"],
                         "mean |r| shuffled": t["mean_abs_correlation_permuted"],
                         "predictive efficiency": t["mean_predictive_efficiency"],
                         f"share p < {result['alpha']:g}": t["share_dependent"],
                         "disjoint dependent": f"{t['disjoint_dependent']} of "
                                               f"{t['disjoint_neighbourhoods']}",
                         "binomial p": t["binomial_pvalue"],
                         "verdict": "dependent" if t["dependent"] else "no evidence"})
    figure = local_tests_figure(result, out, "local_tests.png")
    alpha = f"{result['alpha']:g}"
    meanings = {
        "query": "label tested against the target (| c: after a quadratic in c is regressed "
                 "out of both within each neighbourhood)",
        "mean r": "mean over neighbourhoods of the target's correlation with the query",
        "mean |r|": "mean of its absolute value",
        "mean |r| shuffled": "the same with the query shuffled within each neighbourhood "
                             "(what no dependence gives)",
        "predictive efficiency": "mean share of the target's variance in a neighbourhood that "
                                 "a quadratic in the query explains",
        f"share p < {alpha}": "share of neighbourhoods whose permutation p-value is below "
                              f"{alpha} (about {alpha} without dependence; overlapping "
                              "neighbourhoods make it scatter)",
        "disjoint dependent": f"of the neighbourhoods sharing no member, those with p < {alpha}",
        "binomial p": f"one-sided binomial test of that count against {alpha}",
        "verdict": "dependent where the binomial p is below 0.01"}
    given = f", and given {result['condition']} (a quadratic in it regressed out of both " \
            "within each neighbourhood)" if result["condition"] else ""
    return ("<h2>Local independence tests</h2>"
            f"<p>In the latent of {html.escape(result['latent'])}, each of "
            f"{result['tests'][0]['neighbourhoods']} random galaxies' {result['k']} nearest "
            f"neighbours (of {result['galaxies']:,} sampled) are galaxies the input describes "
            f"alike; a correlation of {html.escape(result['target'])} with a query there is "
            f"information the input did not carry{html.escape(given)}. Each neighbourhood's "
            f"p-value is from {result['permutations']} shuffles of the query; the verdict is "
            "a one-sided binomial test (level 0.01) of the neighbourhoods that share no "
            "member, whose tests are independent under independence.</p>"
            + _img(figure, "local correlations") + _table(pd.DataFrame(rows), 3, meanings))


def _flags_section(aggregates: Aggregates, summary: dict[str, Any]) -> str:
    """How many objects carry each quality flag; out-of-distribution objects called out."""
    summary["flags"] = dict(aggregates.flags)
    rows = max(aggregates.rows, 1)
    parts = ["<h2>Quality flags</h2>"]
    ood = aggregates.flags.get("OUT_OF_DISTRIBUTION", 0)
    if ood:
        parts.append(f'<p class="warning"><b>{ood:,} objects ({ood / rows:.1%}) lie outside '
                     "the models' training distribution</b> (flag OUT_OF_DISTRIBUTION): their "
                     "estimates are extrapolations; the statistics below include them.</p>")
    if not aggregates.flags:
        parts.append("<p>No object carries a quality flag.</p>")
        return "\n".join(parts)
    table = pd.DataFrame([{"flag": name, "objects": count, "share": f"{count / rows:.2%}",
                           "meaning": MEANINGS.get(name, "")}
                          for name, count in aggregates.flags.items()])
    parts.append(_table(table))
    return "\n".join(parts)


def _kind_section(model: ModelColumns, aggregates: Aggregates, checkpoint: Checkpoint | None,
                  out: Path, summary: dict[str, Any], features: FeatureStatistics | None) -> str:
    """The model kind's own section, if its kind is known here and has one."""
    try:
        kind = get_kind(model.kind)
    except InvalidParameterError:
        log.info("model %s: kind %s is not registered here (a missing plug-in?); its own "
                 "report section is left out", model.name, model.kind)
        return ""
    entry: dict[str, Any] = summary["models"].setdefault(model.name, {"kind": model.kind})
    context = ReportContext(model, checkpoint, out, entry, aggregates.kinds.get(model.name),
                            features, _table, _img)
    return kind.report_section(context) or ""


def _feature_section(model: str, stats: FeatureStatistics, store: SurveyStore, out: Path,
                     summary: dict[str, Any]) -> str:
    per_feature = stats.per_feature
    per_feature.sort_values("frequency", ascending=False).to_csv(
        out / f"features_{model}.csv", index=False)
    stats.explained.to_csv(out / f"explained_{model}.csv", index=False)
    top = stats.top(TOP_FEATURES)
    corr_features = stats.top(CORRELATION_FEATURES)
    names = [str(f) for f in corr_features]
    pd.DataFrame(stats.feature_corr[np.ix_(corr_features, corr_features)], index=names,
                 columns=names).to_csv(out / f"feature_correlations_{model}.csv")
    labels = list(store.label_names)
    label_corr = pd.DataFrame(stats.label_corr[corr_features], index=names,
                              columns=labels[:stats.label_corr.shape[1]])
    label_corr.to_csv(out / f"feature_label_correlations_{model}.csv")
    parts = [f"<h2>Sparse features of {html.escape(model)}</h2>",
             f"<p>{stats.n:,} galaxies; {int((per_feature['frequency'] > 0).sum())} of "
             f"{len(per_feature)} features ever active.</p>",
             _img(frequency_figure(per_feature, out, f"frequency_{model}.png"),
                  "activation frequency"),
             _table(per_feature.sort_values("frequency", ascending=False).head(12))]
    if len(stats.explained):
        parts += ["<h3>Variance of each target explained by its most frequent features</h3>",
                  _img(explained_figure(stats.explained, out, f"explained_{model}.png"),
                       "explained variance"), _table(stats.explained)]
    images = exemplar_images(store, {f: stats.exemplars.get(f, []) for f in top})
    if images:
        parts += ["<h3>Top-activating galaxies of the most frequent features</h3>",
                  _img(montage_figure([(f, images.get(f, [])) for f in top], out,
                                      f"exemplars_{model}.png"), "exemplar montage")]
    sample = stats.sample
    if sample is not None and len(sample):
        parts += ["<h3>BPT diagram coloured by feature activation</h3>",
                  _img(bpt_figure(sample, top, out, f"bpt_{model}.png"), "BPT diagrams")]
    parts += ["<h3>Correlations</h3>",
              _img(correlation_figure(stats.feature_corr[np.ix_(corr_features,
                                                                corr_features)],
                                      names, names, out, f"feature_correlations_{model}.png",
                                      "feature-feature"), "feature correlations"),
              _img(correlation_figure(label_corr.to_numpy(), names, list(label_corr.columns),
                                      out, f"feature_label_correlations_{model}.png",
                                      "feature-label"), "feature-label correlations")]
    summary["features"][model] = {
        "n": stats.n, "top_features": top,
        "explained": stats.explained.to_dict(orient="records")}
    return "\n".join(parts)


#: Columns of the side-by-side table: the whole catalog's row of each model's statistics
#: (and its outlier fractions, ``outlier_frac_<threshold>``).
COMPARED = ("n", "bias_median", "sigma_nmad", "crps", "ks", "coverage_68", "coverage_95")


def _comparison_section(target: str, estimates: list[str], aggregates: Aggregates, out: Path,
                        summary: dict[str, Any]) -> str:
    """The models that estimate ``target`` side by side: each one's statistics over all
    galaxies in one table, and their PIT histograms on one figure."""
    spec = aggregates.spec
    rows = []
    for name in estimates:
        model = spec.estimates[name][0]
        table = aggregates.calibration[name]
        overall = table[table["group"] == "all"]
        row: dict[str, Any] = {"model": model.name, "kind": model.kind,
                               "point": spec.point_column(name)}
        if len(overall):
            row.update({c: v for c, v in overall.iloc[0].items()
                        if c in COMPARED or str(c).startswith("outlier_frac")})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"comparison_{target}.csv", index=False)
    summary.setdefault("comparison", {})[target] = frame.to_dict(orient="records")
    parts = [f"<h2>{html.escape(target)}: the models side by side</h2>",
             f"<p>{len(estimates)} models estimate {html.escape(target)}; each row is one "
             "model's statistics over all galaxies (its own section below has them by bin).</p>",
             _table(frame, meanings=COMPARISON_MEANINGS)]
    pits = {spec.estimates[e][0].name: aggregates.pit_hist[e] for e in estimates
            if e in aggregates.pit_hist}
    if len(pits) > 1:
        parts.append(_img(pit_figure(pits, target, out, f"pit_{target}_compared.png"),
                          f"PIT histograms of {target} by model"))
    return "\n".join(parts)


#: Meanings of the side-by-side table's own columns.
COMPARISON_MEANINGS = {"model": "the model's name in the job",
                       "kind": "the model's kind",
                       "point": "the column judged as its point estimate"}


def _calibration_section(estimate: str, table: pd.DataFrame, aggregates: Aggregates,
                         out: Path, summary: dict[str, Any]) -> str:
    """Estimate vs truth, PIT, statistics by bin, and the bins off calibration named."""
    table.to_csv(out / f"calibration_{estimate}.csv", index=False)
    overall = table[table["group"] == "all"].iloc[0].to_dict() if len(table) else {}
    spec = aggregates.spec
    model, target = spec.estimates[estimate]
    settings = spec.targets[target]
    unit = spec.units.get(target, "")
    point = spec.point_column(estimate)
    bins = table[table["group"] != "all"]
    off = off_calibration(table)
    few = bins[bins["note"] == FEW_OBJECTS]
    summary["calibration"][estimate] = {
        **{k: v for k, v in overall.items() if k not in (*BIN_COLUMNS, "note")},
        "off_calibration": off, "few_objects": [r.group for r in few.itertuples()]}
    error = (f"({point} - truth)/(1 + truth)" if settings.relative_error
             else f"{point} - truth")
    outliers = (f"; outlier fractions at |error| &gt; "
                f"{' and '.join(f'{t:g}' for t in settings.outliers)}"
                if settings.outliers else "")
    outside = ""
    if overall.get("outside_grid", 0) > 0:
        outside = (f" {int(overall['outside_grid']):,} galaxies have a true {html.escape(target)}"
                   " outside the PDF's grid: their PIT is 0 or 1 and their CRPS includes the "
                   "distance to the grid.")
    heading = target if estimate == target else f"{target} from {model.name}"
    parts = [f"<h2>{html.escape(heading)}: point estimates and calibration</h2>",
             f"<p>Errors are {html.escape(error)}"
             f"{' in ' + html.escape(unit) if unit and not settings.relative_error else ''}"
             f"{outliers}; {html.escape(SIGMA_NMAD_CONVENTION)}.{outside}</p>",
             _off_calibration_text(off, few, estimate in aggregates.pit_hist)]
    counts, off_plot = aggregates.joint[estimate]
    plotted = (f" {int(off_plot):,} galaxies with truth or estimate outside the plotted "
               "range are not drawn." if off_plot else "")
    parts.append(_img(estimate_figure(
        counts, spec.ranges[estimate], with_unit(f"true {target}", unit),
        with_unit(f"estimated {target} ({point})", unit), out, f"estimate_{estimate}.png",
        relative=settings.relative_error, thresholds=tuple(settings.outliers)),
        f"estimated against true {target}"))
    parts.append(f"<p>Estimate against truth, coloured by galaxies per cell.{plotted}</p>")
    if estimate in aggregates.pit_hist:
        parts.append(_img(pit_figure({estimate: aggregates.pit_hist[estimate]}, target, out,
                                     f"pit_{estimate}.png"), f"PIT histogram of {estimate}"))
    if len(bins) > len(few):
        parts.append(_img(calibration_figure(table, target, out,
                                             f"calibration_{estimate}.png"),
                          f"calibration of {estimate} by bin"))
    binned = [b for b in dict.fromkeys(bins["binned_by"]) if b]
    if binned:
        parts.append(f"<p>Rows: all galaxies, then bins of {html.escape(' and of '.join(binned))}"
                     ".</p>")
    parts.append(_table(table.drop(columns=[c for c in BIN_COLUMNS if c in table])))
    return "\n".join(parts)


def _off_calibration_text(off: list[dict[str, Any]], few: pd.DataFrame, has_pdf: bool) -> str:
    """A paragraph naming each bin off calibration and why, with the criteria used."""
    criteria = (f"a bin is off when its median error exceeds {BIAS_MARGIN:g} times the "
                "catalog's sigma_NMAD")
    if has_pdf:
        criteria += (f", or its 68 % / 95 % interval coverage strays from nominal by more "
                     f"than {COVERAGE_MARGIN_68:g} / {COVERAGE_MARGIN_95:g}")
    few_text = (f" {len(few)} bins with fewer than {MIN_BIN_OBJECTS} galaxies are marked "
                f"'{FEW_OBJECTS}' and not judged." if len(few) else "")
    if not off:
        return f"<p>No bin is off calibration ({criteria}).{few_text}</p>"
    items = "".join(f"<li><b>{html.escape(b['group'])}</b> ({b['n']:,} galaxies): "
                    f"{html.escape(b['why'])}</li>" for b in off)
    return (f'<div class="warning"><p><b>{len(off)} bins off calibration</b> '
            f"({criteria}):</p><ul>{items}</ul>{few_text}</div>")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table.t {{ border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }}
table.t td, table.t th {{ padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
figure {{ margin: 0.5em 0; }} img {{ max-width: 100%; }}
pre {{ background: #f5f5f5; padding: 0.4em; white-space: pre-wrap; }}
dl.columns {{ font-size: 11px; color: #555; display: grid;
  grid-template-columns: max-content auto; gap: 0 1em; margin: -1em 0 1.5em; }}
dl.columns dd {{ margin: 0; }}
.warning {{ background: #fff3e0; border-left: 4px solid #e65100; padding: 0.2em 0.8em; }}
</style></head>
<body>
<h1>{title}</h1>
{status}
<p>{rows:,} galaxies of catalog <code>{catalog}</code>, labels from store
<code>{store}</code>.</p>
{body}
</body></html>
"""
