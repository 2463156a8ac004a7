"""The synthetic survey's causal graph, read off :mod:`.physics`, :mod:`.sed` and the
generator: which quantity is computed from which.

Causal discovery on the survey's catalog-level variables is judged against it.
Some causes are latent (never written to the store): whether a galaxy is
quiescent, its size offset at fixed mass, a post-starburst episode, the
survey depth.  Two visible variables that no set of visible variables can
separate -- a direct edge, or a path through latents only that has no collider
(a latent common cause, a latent mediator) -- are *adjacent* in the graph over
the visible variables (the maximal ancestral graph); :func:`visible_adjacencies`
lists those pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EDGES", "LATENT", "PHOTOMETRY_CAUSES", "edges_among", "is_photometric",
           "visible_adjacencies"]

#: Latent causes of the generator.
LATENT = ("quiescent", "size_offset", "post_starburst", "depth")

#: (cause, effect) pairs among the labels and latents (photometry: :func:`edges_among`).
EDGES: tuple[tuple[str, str], ...] = (
    ("redshift", "log_mstar"),  # a flux-limited survey sees massive galaxies far away
    ("log_mstar", "quiescent"),
    ("log_mstar", "log_sfr"), ("redshift", "log_sfr"), ("quiescent", "log_sfr"),
    ("quiescent", "post_starburst"),
    ("quiescent", "bulge_fraction"),
    ("bulge_fraction", "log_mbh"), ("log_mstar", "log_mbh"),
    ("cos_inclination", "dust_av"), ("quiescent", "dust_av"), ("log_sfr", "dust_av"),
    ("log_mstar", "dust_av"),
    ("log_mstar", "half_light_radius"), ("quiescent", "half_light_radius"),
    ("size_offset", "half_light_radius"), ("redshift", "half_light_radius"),
    ("bulge_fraction", "half_light_radius"),
    ("log_mstar", "metallicity"), ("log_sfr", "metallicity"), ("redshift", "metallicity"),
    ("size_offset", "metallicity"), ("cos_inclination", "metallicity"),
    ("bulge_fraction", "metallicity"),
)

#: Causes of every photometric variable (``mag_<band>``, a colour ``<a>-<b>``): the stellar
#: populations (mass, star formation, a post-starburst), dust, the distance, and the depth
#: that sets the noise.
PHOTOMETRY_CAUSES = ("log_mstar", "log_sfr", "dust_av", "redshift", "post_starburst", "depth")


def is_photometric(name: str) -> bool:
    """``mag_<band>`` or a colour ``<a>-<b>``."""
    return name.startswith("mag_") or name.count("-") == 1


def edges_among(variables: Sequence[str]) -> list[tuple[str, str]]:
    """:data:`EDGES` plus the edges into each photometric variable of ``variables``."""
    return [*EDGES, *((cause, v) for v in variables if is_photometric(v)
                      for cause in PHOTOMETRY_CAUSES)]


def visible_adjacencies(variables: Sequence[str]) -> set[frozenset[str]]:
    """Pairs of ``variables`` adjacent in the graph over them: a direct edge, or a path
    whose interior nodes are all latent and none of them a collider."""
    parents: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    for cause, effect in edges_among(variables):
        parents.setdefault(effect, set()).add(cause)
        children.setdefault(cause, set()).add(effect)
    visible = set(variables)

    def reach(start: str) -> set[str]:
        """Visible nodes reached from ``start`` through latents without a collider: go up
        (to causes) any number of times, then down (to effects) only."""
        found: set[str] = set()
        stack = [(start, "up", True)]  # node, direction allowed, is the start
        seen = set()
        while stack:
            node, direction, first = stack.pop()
            if (node, direction) in seen:
                continue
            seen.add((node, direction))
            if not first and node in visible:
                found.add(node)
                continue
            if not first and node not in LATENT:
                continue
            if direction == "up":
                stack += [(p, "up", False) for p in parents.get(node, ())]
            stack += [(c, "down", False) for c in children.get(node, ())]
        return found

    pairs = set()
    for a in variables:
        for b in reach(a):
            pairs.add(frozenset((a, b)))
    return {p for p in pairs if len(p) == 2 and all(v in visible for v in p)}

