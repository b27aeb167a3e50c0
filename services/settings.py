"""Settings, built once at the entry point and passed down.

Sources, strongest first: keyword overrides, environment variables prefixed ``FAITHWATCH_``
(nested with ``__``, e.g. ``FAITHWATCH_DETECT__FALSE_ALARM_RATE=1e-6``,
``FAITHWATCH_STORE__URL=http://clickhouse:8123``), then an optional YAML or TOML file given with
``--config``, then defaults. Secrets are ``SecretStr`` and print masked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from alerts.categories import DEFAULT_CATEGORIES
from pipelines.config import (
    BaselineConfig,
    ClusterConfig,
    DetectConfig,
    EmbeddingConfig,
    FaithfulnessConfig,
    InputConfig,
)
from pipelines.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Section):
    backend: Literal["chdb", "clickhouse"] = Field("chdb", description="chdb: embedded under data_dir; clickhouse: a server")
    url: str | None = Field(None, description="ClickHouse HTTP(S) URL, e.g. http://clickhouse:8123")
    user: str = "default"
    password: SecretStr | None = None
    database: str = Field("faithwatch", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    secure: bool = Field(False, description="TLS (https); also implied by an https:// url")
    verify: bool = Field(True, description="check the server's TLS certificate")
    ca_cert: Path | None = Field(None, description="CA bundle for the server's certificate (PEM)")
    client_cert: Path | None = Field(None, description="client certificate for mutual TLS (PEM)")
    client_cert_key: Path | None = Field(None, description="key of client_cert, if not inside it")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to connect to a ClickHouse server")
    repair_at_start: bool = Field(True, description="clickhouse: `faithwatch worker` and embedded `faithwatch serve` check at start, and after a store outage, that the hour and day rollups count what interactions holds and rebuild the days that drift (what a crash of the server mid-insert leaves; `faithwatch store check --repair` by hand)")
    ttl_days: int | None = Field(None, ge=1, description="days raw interactions are kept (None: forever); applied by `faithwatch migrate`")
    rollup_ttl_days: int | None = Field(None, ge=1, description="days per-minute rollups are kept (None: forever); applied by `faithwatch migrate`")

    @property
    def repairs_rollups(self) -> bool:
        """Whether writers check the rollups themselves (services/store/consistency.py): on a
        ClickHouse server with ``repair_at_start`` (the chDB store repairs when it opens)."""
        return self.backend == "clickhouse" and self.repair_at_start


class KafkaSettings(_Section):
    brokers: str = Field("kafka://127.0.0.1:9092", description="faust broker URL(s)")
    interactions_topic: str = "faithwatch.interactions"
    scored_topic: str = "faithwatch.scored"
    incidents_topic: str = "faithwatch.incidents"
    dead_letter_topic: str = "faithwatch.dead-letter"
    cluster_model_topic: str = "faithwatch.cluster-model"
    gate_model_topic: str = Field("faithwatch.gate-model", description="compacted, one partition: the sequence stage publishes what POST /v1/gate needs (centroids, families, categories) in chunks; a Kafka-mode API follows it")
    partitions: int = Field(8, ge=1)
    prepared_topic: str = Field("faithwatch.prepared", description="internal: prepared records and watermarks, one partition")
    app_id: str = Field("faithwatch", description="faust app id: the consumer group, and the prefix of the checkpoint table's changelog topic")
    batch_size: int = Field(256, ge=1, description="interactions the score stage embeds and scores together")
    batch_seconds: float = Field(0.5, gt=0, description="longest the score and sequence stages wait to fill a batch")
    reorder_idle_seconds: float = Field(5.0, gt=0, description="no prepared record for this long (processing time): release the reorder buffer and fit what waits for the bootstrap")
    checkpoint_seconds: float = Field(10.0, gt=0, description="the sequence stage's state is checkpointed at least this often")
    checkpoint_records: int = Field(5000, ge=1, description="... and after at most this many prepared messages")
    session_timeout_seconds: float = Field(30.0, ge=1, description="consumer group session and rebalance timeout: how long a dead worker holds its partitions")
    publish_timeout_seconds: float = Field(30.0, gt=0, description="serve in Kafka mode: longest a POST waits for the broker to acknowledge its records (a broker down or restarting); past it the answer is 503 and the client sends the batch again")
    metrics_port: int = Field(0, ge=0, le=65535, description="serve this worker's Prometheus metrics at http://HOST:PORT/metrics (stage counters, scored, incident events, alert deliveries); 0: off")
    metrics_host: str = Field("127.0.0.1", description="address the worker's metrics endpoint listens on (0.0.0.0 in a container)")


class OtlpSettings(_Section):
    hold_seconds: float = Field(10.0, ge=0, description="POST /v1/traces: a trace's answers wait this long after its first span arrived for the rest of its spans (retrievals exported in another request); 0: none wait")
    max_traces: int = Field(10_000, ge=1, description="traces held at most; one more releases the oldest early")


class ApiSettings(_Section):
    ingest: Literal["embedded", "kafka"] = Field("embedded", description="embedded: a live pipeline in the server (chdb store, or one clickhouse server database per serve); kafka: accepted records are published to kafka.interactions_topic for `faithwatch worker` (clickhouse store)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    tokens: list[SecretStr] = Field(default_factory=list, description="bearer tokens accepted by every route but /healthz")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest POST /v1/interactions body; bigger ones get 413")
    max_records_per_request: int = Field(10_000, ge=1, description="most records one POST /v1/interactions may hold; more get 413 before they are parsed (a body of tiny invalid records would otherwise write one dead letter each)")
    insecure: bool = Field(False, description="serve without tokens (every route open); refused otherwise when tokens is empty")
    public_docs: bool = Field(False, description="serve /docs and /openapi.json without a token (they show the schema, no data)")
    queue_max_records: int = Field(100_000, ge=1, description="accepted records waiting for the ingest worker; past it POST gets 503")
    wait_timeout_seconds: float = Field(120.0, gt=0, description="longest a ?wait=true request or POST /v1/flush waits")
    cluster_refresh_seconds: float = Field(5.0, ge=0, description="clusters (size, last seen) are rewritten to the store at most this often")
    checkpoint_seconds: float = Field(30.0, ge=0, description="the live pipeline's state is saved to DATA_DIR/state this often (0: only at shutdown); a restart continues from it")
    spool: bool = Field(True, description="accepted interactions are synced to a write-ahead spool under DATA_DIR/spool before the 202, and replayed after a crash; false (benchmarks, throwaway servers only) loses what was queued on a crash")
    spool_max_bytes: int = Field(512 * 1024**2, ge=1024**2, description="most bytes the spool holds (records accepted but not yet covered by a checkpoint); past it POST gets 503 with Retry-After")
    spool_segment_bytes: int = Field(4 * 1024**2, ge=1, description="a spool file takes appends until it holds this many bytes; a file is deleted once every record in it is stored and checkpointed")
    clickhouse_max_seconds: int = Field(30, ge=1, description="/clickhouse (read-only SQL for Grafana on the embedded store): longest a query runs")
    clickhouse_max_memory_bytes: int = Field(2 * 1024**3, ge=16 * 1024**2, description="/clickhouse: most memory one query may use")
    clickhouse_max_result_rows: int = Field(1_000_000, ge=10_000, description="/clickhouse: most rows one answer may hold (clients read system.settings, about 2,000 rows, on connect)")
    otlp: OtlpSettings = OtlpSettings()


class ReplaySettings(_Section):
    batch_size: int = Field(256, ge=1, description="interactions embedded and scored together")
    seen_capacity: int = Field(2_000_000, ge=1, description="interaction ids remembered to drop duplicates")


class NotifySettings(_Section):
    grafana_url: str | None = Field(None, description="Grafana base URL, e.g. https://grafana.example.com: alerts link to its incident dashboard (uid faithwatch-incident, variable incident)")
    api_url: str | None = Field(None, description="base URL of the faithwatch HTTP API, e.g. https://faithwatch.example.com: alerts link to GET /v1/incidents/{id}")
    timeout_seconds: float = Field(10.0, gt=0, description="one delivery attempt's HTTP timeout")
    backoff_seconds: float = Field(1.0, gt=0, description="wait after the first failed attempt; doubled after each further one (with jitter)")
    backoff_max_seconds: float = Field(300.0, gt=0, description="longest wait between two attempts (a longer Retry-After is honoured)")
    give_up_seconds: float = Field(3600.0, gt=0, description="a delivery still failing this long after it was queued is given up (and recorded as such)")
    alertmanager_refresh_seconds: float = Field(60.0, ge=0, description="open incidents are sent to Alertmanager again this often, below its resolve_timeout (5 min by default), so their alerts stay firing (0: never)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FAITHWATCH_", env_nested_delimiter="__",
                                      extra="forbid", validate_default=True)

    data_dir: Path = Field(Path(".faithwatch"), description="embedded store, dead letters and state")
    seed_file: Path | None = Field(None, description="example queries (.txt/.jsonl/.csv) to fit the first clusters on, instead of the stream's first bootstrap_size")
    categories_file: Path = Field(DEFAULT_CATEGORIES, description="intent categories and their alert policy")
    embedding: EmbeddingConfig = EmbeddingConfig()
    cluster: ClusterConfig = ClusterConfig()
    faithfulness: FaithfulnessConfig = FaithfulnessConfig()
    baseline: BaselineConfig = BaselineConfig()
    detect: DetectConfig = DetectConfig()
    input: InputConfig = InputConfig()
    store: StoreSettings = StoreSettings()
    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()
    replay: ReplaySettings = ReplaySettings()
    notify_file: Path | None = Field(None, description="alert channels and routes (docs/alerts.md); none: incidents go nowhere but the store and --alerts-out")
    notify: NotifySettings = NotifySettings()

    def masked(self) -> dict:
        """The effective settings as JSON-safe data, secrets masked (a password inside a URL too)."""
        shown = self.model_dump(mode="json")
        shown["store"]["url"] = mask_url(shown["store"]["url"])
        shown["kafka"]["brokers"] = ";".join(mask_url(b) for b in shown["kafka"]["brokers"].split(";"))
        for key in ("grafana_url", "api_url"):
            shown["notify"][key] = mask_url(shown["notify"][key])
        return shown


def mask_url(url: str | None) -> str | None:
    """``url`` with the password of its user info replaced by ``**********``.

    >>> mask_url("http://bob:hunter2@clickhouse:8123/?x=1"), mask_url("http://clickhouse:8123")
    ('http://bob:**********@clickhouse:8123/?x=1', 'http://clickhouse:8123')
    """
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:**********@{host}"))


def _unparsed_environment(exc: SettingsError) -> str:
    """One line naming the environment variable whose list or object value is not JSON."""
    section = str(exc).split('"')[1] if '"' in str(exc) else ""
    model = Settings.model_fields.get(section)
    fields = getattr(model.annotation, "model_fields", {}) if model else {}
    prefix = f"FAITHWATCH_{section.upper()}__"
    for name, value in os.environ.items():
        field = fields.get(name[len(prefix):].lower()) if name.upper().startswith(prefix) else None
        if field is not None and get_origin(field.annotation) in (list, dict):
            try:
                json.loads(value)
            except ValueError:
                return (f"environment variable {name} is not JSON: give a JSON list or object, e.g. "
                        f"{name}='[\"<value>\"]'")
    variable = f"FAITHWATCH_{section.upper()}" if section else "a FAITHWATCH_ variable"
    return f"environment: a value under {variable} cannot be read ({exc}); lists and objects must be JSON"


def load_settings(config_file: Path | None = None, **overrides) -> Settings:
    """Build the settings once: overrides > environment > config file (YAML/TOML) > defaults."""
    if config_file is not None:
        config_file = Path(config_file)
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        if config_file.suffix not in (".yaml", ".yml", ".toml"):
            raise ConfigError(f"config file {config_file}: use .yaml, .yml or .toml")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                if config_file.suffix == ".toml":
                    sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
                else:
                    sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
            return tuple(sources)

    try:
        return _FromFile(**overrides)
    except SettingsError as exc:
        raise ConfigError(_unparsed_environment(exc)) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"setting {where}: {err['msg']}") from None
