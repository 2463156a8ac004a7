"""``surveyproc ingest cutouts|images|table``: real survey files into a store."""

from __future__ import annotations

import argparse

from ..errors import InvalidParameterError
from ._common import add_layout_options, add_storage_option, bands, layout_kwargs, storage_options

__all__ = ["add_ingest_commands"]


def _columns(args: argparse.Namespace, *, default_row_ids: bool = False):
    from ..store.ingest import CatalogColumns

    photometry = _pairs(args.photometry, "--photometry", "band=column")
    return CatalogColumns(
        id_column=args.id_column,
        id_from=tuple(c for c in (args.id_from or "").split(",") if c),
        row_ids=args.row_ids or (default_row_ids and args.id_column == "object_id"
                                 and not args.id_from),
        ra=args.ra_column, dec=args.dec_column,
        labels=None if args.labels is None else tuple(c for c in args.labels.split(",") if c),
        photometry=photometry, photometry_unit=args.photometry_unit,
        exclude=tuple(c for c in (args.exclude or "").split(",") if c),
    )


def _add_identity_options(ids: argparse._ActionsContainer,
                          sky: argparse._ActionsContainer) -> None:
    """How objects are named (``ids``: one of a column, hashed columns or the row number)
    and where they are (``sky``): shared by every ingest command that reads a table."""
    ids.add_argument("--id-column", default="object_id", help="unique integer id (object_id)")
    ids.add_argument("--id-from", default=None, metavar="A,B,...",
                     help="hash these columns into ids instead (e.g. plate,mjd,fiberid)")
    ids.add_argument("--row-ids", action="store_true", help="number objects by table row")
    sky.add_argument("--ra-column", default="ra")
    sky.add_argument("--dec-column", default="dec")


def _add_catalog_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("catalog columns (matched case-insensitively)")
    _add_identity_options(group, group)
    group.add_argument("--labels", default=None, metavar="A,B,...",
                       help="columns to store as labels (default: every other numeric column)")
    group.add_argument("--exclude", default=None, metavar="A,B,...",
                       help="columns never stored as labels")
    group.add_argument("--photometry", action="append", default=[], metavar="BAND=COLUMN",
                       help="integrated flux or magnitude column of a band (repeatable)")
    group.add_argument("--photometry-unit", choices=("nanomaggy", "mag"), default="nanomaggy",
                       help="unit of the photometry columns; AB mags become nanomaggies")
    add_storage_option(parser, "--input-option", None, "the input files")


def _pairs(values: list[str], flag: str, shape: str = "NAME=COLUMN") -> dict[str, str]:
    """``["g=modelMag_g", ...]`` -> ``{"g": "modelMag_g"}`` (one line on a malformed pair)."""
    out: dict[str, str] = {}
    for pair in values:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            msg = f"{flag} {pair!r} must look like {shape}"
            raise InvalidParameterError(msg)
        out[name.strip()] = column.strip()
    return out


def _cmd_table(args: argparse.Namespace) -> int:
    from ..store.ingest import CatalogColumns, ingest_table

    id_from = tuple(c for c in (args.id_from or "").split(",") if c)
    columns = CatalogColumns(
        id_column=args.id_column, id_from=id_from, row_ids=args.row_ids,
        ra=args.ra_column, dec=args.dec_column,
        photometry=_pairs(args.photometry, "--photometry"),
        photometry_error=_pairs(args.photometry_error, "--photometry-error"),
        photometry_unit=args.photometry_unit,
        label_columns=_pairs(args.label, "--label"), where=args.where)
    report = ingest_table(args.url, args.catalog, columns, survey=args.survey,
                          label_units=_pairs(args.label_unit, "--label-unit"),
                          overwrite=args.overwrite,
                          storage_options=storage_options(args.storage_option),
                          input_storage_options=storage_options(args.input_option))
    print(report.format())
    return 0


def _add_table_command(kinds: argparse._SubParsersAction) -> None:
    table = kinds.add_parser(
        "table", help="a table of photometry (CSV, Parquet, FITS) as a photometry-only store",
        description="Write a catalog's photometry, errors and labels (e.g. SDSS model "
                    "magnitudes with spectroscopic redshifts) as a store without images; "
                    "models with 'inputs: photometry' train and infer on it.")
    table.add_argument("url", help="path or fsspec URL of the new store")
    table.add_argument("--catalog", required=True, help="table file: .csv, .parquet, .fits, "
                       ".ecsv")
    _add_identity_options(table.add_mutually_exclusive_group(), table)
    table.add_argument("--photometry", action="append", default=[], required=True,
                       metavar="BAND=COLUMN", help="a band's flux or magnitude column "
                       "(repeatable, in band order)")
    table.add_argument("--photometry-error", action="append", default=[],
                       metavar="BAND=COLUMN", help="its 1-sigma error column (repeatable)")
    table.add_argument("--photometry-unit", choices=("nanomaggy", "mag"), default="mag",
                       help="unit of the photometry columns (mag: AB magnitudes, stored as "
                            "nanomaggies; sentinels such as -9999 become missing)")
    table.add_argument("--label", action="append", default=[], metavar="NAME=COLUMN",
                       help="store a column as labels/NAME (repeatable), e.g. redshift=z")
    table.add_argument("--label-unit", action="append", default=[], metavar="NAME=UNIT",
                       help="unit of a label (repeatable)")
    table.add_argument("--where", default=None, metavar="EXPR",
                       help="keep rows where EXPR holds, e.g. 'class == \"GALAXY\"'")
    table.add_argument("--survey", default="table", help="survey name for the store")
    table.add_argument("--overwrite", action="store_true", help="replace an existing store")
    add_storage_option(table)
    add_storage_option(table, "--input-option", None, "the table file")
    table.set_defaults(func=_cmd_table)


def _print_report(report, url: str) -> None:
    print(report.format())
    print(f"store       {url}")


def _cmd_cutouts(args: argparse.Namespace) -> int:
    from ..ops.ray_runtime import ray_runtime
    from ..store.ingest import ingest_cutouts

    with ray_runtime(args.ray_address, num_cpus=args.num_cpus):
        report = ingest_cutouts(
            args.url, args.catalog, args.dir, bands=args.bands, pattern=args.pattern,
            columns=_columns(args), size=args.size, pixel_scale=args.pixel_scale,
            zero_point=args.zero_point, sky_subtracted=args.sky_subtracted,
            psf_fwhm=args.psf_fwhm, survey=args.survey,
            input_storage_options=storage_options(args.input_option), **layout_kwargs(args))
    _print_report(report, args.url)
    return 0


def _image_arg(text: str) -> tuple[str, tuple[str, int | str]]:
    band, sep, rest = text.partition("=")
    if not sep or not band or not rest:
        msg = f"--image {text!r} must look like band=path or band=path[hdu]"
        raise argparse.ArgumentTypeError(msg)
    hdu: int | str = 0
    if rest.endswith("]") and "[" in rest:
        rest, _, inside = rest[:-1].rpartition("[")
        hdu = int(inside) if inside.isdigit() else inside
    return band, (rest, hdu)


def _cmd_images(args: argparse.Namespace) -> int:
    from ..ops.ray_runtime import ray_runtime
    from ..store.ingest import detect_positions, ingest_images, read_catalog

    images = dict(args.image)
    inputs = storage_options(args.input_option)
    if args.positions:
        catalog = read_catalog(args.positions, _columns(args, default_row_ids=True), inputs)
    else:
        band = args.detect_band or list(images)[len(images) // 2]
        if band not in images:
            msg = f"--detect-band {band} is not one of the images' bands {list(images)}"
            raise InvalidParameterError(msg)
        url, hdu = images[band]
        catalog = detect_positions(url, hdu=hdu, nsigma=args.detect_nsigma,
                                   npixels=args.detect_npixels, band=band,
                                   storage_options=inputs)
        psf = catalog.table.meta.get("psf_fwhm_arcsec")
        stars = int((catalog.flags != 0).sum()) if catalog.flags is not None else 0
        print(f"detected    {len(catalog)} sources in the {band} image"
              + (f" (PSF FWHM {psf:.2f} arcsec; {stars} star-like)" if psf else ""))
    with ray_runtime(args.ray_address, num_cpus=args.num_cpus):
        report = ingest_images(args.url, images, catalog, size=args.size,
                               zero_point=args.zero_point,
                               sky_subtracted=args.sky_subtracted,
                               psf_fwhm=args.psf_fwhm, survey=args.survey,
                               input_storage_options=inputs,
                               **layout_kwargs(args))
    _print_report(report, args.url)
    return 0


def add_ingest_commands(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser("ingest", help="build a store from real survey FITS files",
                                 description="Build a store from real survey files.")
    kinds = ingest.add_subparsers(dest="kind", metavar="KIND", required=True)

    cutouts = kinds.add_parser(
        "cutouts", help="per-object FITS cutouts listed in a catalog",
        description="Per-object FITS cutouts (one multi-band file, or one file per band) "
                    "listed in a catalog (FITS table, CSV or ECSV).")
    cutouts.add_argument("url", help="path or fsspec URL of the new store")
    cutouts.add_argument("--catalog", required=True, help="catalog file (ids, ra, dec, labels)")
    cutouts.add_argument("--dir", required=True, help="folder (or URL) holding the cutouts")
    cutouts.add_argument("--bands", type=bands, required=True,
                         help="band names in plane order, e.g. g,r,i,z,y")
    cutouts.add_argument("--pattern", default="{object_id}.fits",
                         help="file name pattern; may use {object_id}, {row}, {band} and any "
                              "catalog column ({object_id}.fits)")
    cutouts.add_argument("--size", type=int, default=None,
                         help="cutout side in pixels (default: the first file's); others are "
                              "centre-cropped or NaN-padded and flagged")
    cutouts.add_argument("--pixel-scale", type=float, default=None,
                         help="arcsec per pixel (default: from the files' WCS)")
    _add_shared(cutouts)
    _add_catalog_options(cutouts)
    cutouts.set_defaults(func=_cmd_cutouts)

    images = kinds.add_parser(
        "images", help="large images with WCS cut at catalog or detected positions",
        description="Cut square cutouts out of large FITS images with WCS (astropy Cutout2D), "
                    "one image per band, at the positions of a catalog or of sources "
                    "detected with photutils. Objects off an image edge are kept and flagged.")
    images.add_argument("url", help="path or fsspec URL of the new store")
    images.add_argument("--image", type=_image_arg, action="append", required=True,
                        metavar="BAND=PATH[HDU]", help="one per band, in store band order")
    where = images.add_mutually_exclusive_group(required=True)
    where.add_argument("--positions", help="catalog of positions (ra, dec, optional ids/labels)")
    where.add_argument("--detect", action="store_true",
                       help="detect sources with photutils instead of reading positions")
    images.add_argument("--detect-band", default=None, help="band to detect in (middle band)")
    images.add_argument("--detect-nsigma", type=float, default=5.0)
    images.add_argument("--detect-npixels", type=int, default=10)
    images.add_argument("--size", type=int, default=64, help="cutout side in pixels (64)")
    _add_shared(images)
    _add_catalog_options(images)
    images.set_defaults(func=_cmd_images)
    _add_table_command(kinds)


def _add_shared(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zero-point", type=float, default=None,
                        help="AB zero point of the input pixels (default: MAGZERO-like header "
                             "keyword, or 22.5 for BUNIT=nanomaggy); the store holds "
                             "nanomaggies")
    parser.add_argument("--sky-subtracted", action="store_true",
                        help="the inputs are sky-subtracted already (default: subtract each "
                             "cutout's local sky)")
    parser.add_argument("--psf-fwhm", type=float, default=None, metavar="ARCSEC",
                        help="PSF FWHM (default: PSF_FWHM/SEEING header keyword, or measured "
                             "on the detected stars)")
    parser.add_argument("--survey", default="ingested", help="survey name for the store")
    add_storage_option(parser)
    add_layout_options(parser)
