"""The N / N-1 guard of seed data: an extension applies only to the seed data it was written for.

HQ keeps two versions of the CDX seed data (for channel databases of the current major version N
and the previous one, N-1). CDX applies an extension resource only when the resource being built
is the one it extends (``originalCDXSeedDataResource == resourceStr(RetailCDXSeedDataAX7)``);
applied to the other version it gives unintended results. cdx does the same: every file of one
import must carry the ``Name`` and ``ChannelDBMajorVersion`` of the base (the first file, or the
``extensions.seed_data`` recorded in the topology by an earlier import). A file that omits them
is accepted with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from cdx.topology.extensions import SeedData
from cdx.topology.issues import Issue, SeedError
from cdx.topology.seed_xml import SeedFile


def check_versions(seeds: Sequence[SeedFile], recorded: SeedData | None) -> tuple[SeedData | None, list[Issue]]:
    """The seed data the files are for, and warnings; raises ``SeedError`` on a mismatch."""
    wanted = recorded
    source = "the topology (extensions.seed_data)"
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for seed in seeds:
        try:
            if seed.name is None or seed.major_version is None:
                SeedData(name="seed", channel_db_major_version=seed.major_version or "0")  # the number, when given
                lacks = " and ".join(a for a, v in (("Name", seed.name), ("ChannelDBMajorVersion", seed.major_version))
                                     if v is None)
                warnings.append(Issue("", seed.line, f"<RetailCdxSeedData> has no {lacks}: cannot check it extends"
                                                     " the right seed data version (add both)", seed.path))
                continue
            mine = SeedData(name=seed.name, channel_db_major_version=seed.major_version)
        except ValidationError:
            errors.append(Issue("", seed.line, f"ChannelDBMajorVersion={seed.major_version!r} is not a number"
                                               " (e.g. \"7\")", seed.path))
            continue
        if wanted is None:
            wanted, source = mine, seed.path
        elif (mine.name.casefold(), mine.channel_db_major_version) != (
                wanted.name.casefold(), wanted.channel_db_major_version):
            errors.append(Issue("", seed.line, (
                f"written for seed data {mine.name} (ChannelDBMajorVersion {mine.channel_db_major_version}), but"
                f" {source} is {wanted.name} (ChannelDBMajorVersion {wanted.channel_db_major_version}): an extension"
                " applies only to the seed data version it extends (N / N-1); import it with its own base"),
                seed.path))
    if errors:
        raise SeedError(errors)
    return wanted, warnings
