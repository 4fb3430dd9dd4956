"""Where a debtor is: the region's ISO code and the time zone, or the zones they may be in."""

from __future__ import annotations

from dataclasses import dataclass

# Region names as imports write them, to the ISO 3166-2 codes the holiday calendars use.
CHILEAN_REGIONS = {
    "arica y parinacota": "AP",
    "tarapacá": "TA",
    "antofagasta": "AN",
    "atacama": "AT",
    "coquimbo": "CO",
    "valparaíso": "VS",
    "metropolitana": "RM",
    "o'higgins": "LI",
    "maule": "ML",
    "ñuble": "NB",
    "biobío": "BI",
    "la araucanía": "AR",
    "los ríos": "LR",
    "los lagos": "LL",
    "aysén": "AI",
    "magallanes": "MA",
}
# Every zone of Chile. Easter Island (Rapa Nui) belongs to the Valparaíso region, so that
# region alone does not say which clock the debtor lives by; Aysén left Santiago's clock in 2025.
CHILEAN_ZONES = (
    "America/Santiago",
    "America/Punta_Arenas",
    "America/Coyhaique",
    "Pacific/Easter",
)
_REGION_ZONES = {
    "MA": ("America/Punta_Arenas",),
    "AI": ("America/Coyhaique",),
    "VS": ("America/Santiago", "Pacific/Easter"),
}
_MAINLAND = ("America/Santiago",)


@dataclass(frozen=True)
class DebtorLocation:
    """The zone plans use, and, when the zone is unknown, every zone the debtor may be in."""

    time_zone: str
    candidates: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """True when one zone is certain."""
        return not self.candidates


def subdivision_of(region: str | None) -> str | None:
    """The region's ISO code, or None (the rules then avoid every regional holiday)."""
    if not region:
        return None
    text = region.strip()
    if text.upper() in CHILEAN_REGIONS.values():
        return text.upper()
    return CHILEAN_REGIONS.get(text.lower())


def zones_of_region(region: str | None) -> tuple[str, ...]:
    """The zones a Chilean region spans; empty when the region is not known."""
    code = subdivision_of(region)
    if code is None:
        return ()
    return _REGION_ZONES.get(code, _MAINLAND)


def locate(
    time_zone: str | None, region: str | None, default_zone: str | None
) -> DebtorLocation:
    """The debtor's zone from the file, else its region, else the default, else unknown."""
    if time_zone:
        return DebtorLocation(time_zone)
    zones = zones_of_region(region)
    if len(zones) == 1:
        return DebtorLocation(zones[0])
    if default_zone:
        return DebtorLocation(default_zone)
    candidates = zones or CHILEAN_ZONES
    return DebtorLocation(candidates[0], candidates)


def candidates_of(stored: str | None) -> tuple[str, ...]:
    """The candidate zones as stored (comma-separated), as a tuple."""
    return tuple(name for name in (stored or "").split(",") if name)
