"""The topology model: what ``topology.yaml`` declares and the queries other components need.

Public API (import from ``cdx.topology``):

- :func:`load_topology`, :func:`parse_topology`, :func:`validate_topology`, :func:`default_topology_path`
- models: :class:`Topology`, :class:`KafkaConfig`, :class:`SchemaRegistry`, :class:`HqDatabase`,
  :class:`Database`, :class:`Job`, :class:`Subjob`, :class:`FieldMap`, :class:`ChannelExtension`,
  :class:`ChannelFilter`, :class:`ChannelDataGroup`, :class:`Channel`, :class:`OfflineRegister`,
  :class:`DistributionSchedule`; enums :class:`Direction`, :class:`Dialect`, :class:`ChannelType`
- :class:`TableRef`, :class:`ChannelInfo`, :class:`DatabaseInfo`
- errors: :class:`TopologyError`, :class:`SeedError` (both carry ``issues: list[Issue]``)
- :func:`dump_topology` (model -> YAML text)
"""

from cdx.topology.dsn import Dialect
from cdx.topology.dump import dump_topology, topology_to_data
from cdx.topology.identifiers import TableRef
from cdx.topology.index import ChannelInfo, DatabaseInfo
from cdx.topology.issues import Issue, SeedError, TopologyError
from cdx.topology.loader import default_topology_path, load_topology, parse_topology, validate_topology
from cdx.topology.model import (
    DATAAREAID,
    Channel,
    ChannelDataGroup,
    ChannelExtension,
    ChannelFilter,
    ChannelType,
    Database,
    Direction,
    DistributionSchedule,
    FieldMap,
    HqDatabase,
    Job,
    KafkaConfig,
    OfflineRegister,
    SchemaRegistry,
    Subjob,
)
from cdx.topology.root import Topology

__all__ = [
    "DATAAREAID",
    "Channel",
    "ChannelDataGroup",
    "ChannelExtension",
    "ChannelFilter",
    "ChannelInfo",
    "ChannelType",
    "Database",
    "DatabaseInfo",
    "Dialect",
    "Direction",
    "DistributionSchedule",
    "FieldMap",
    "HqDatabase",
    "Issue",
    "Job",
    "KafkaConfig",
    "OfflineRegister",
    "SchemaRegistry",
    "SeedError",
    "Subjob",
    "TableRef",
    "Topology",
    "TopologyError",
    "default_topology_path",
    "dump_topology",
    "load_topology",
    "parse_topology",
    "topology_to_data",
    "validate_topology",
]
