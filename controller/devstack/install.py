"""Install what the stack needs when it is missing: apt packages, Maven jars, Presto, Airflow."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from controller.devstack import procs
from controller.devstack.layout import (
    AIRFLOW_VERSION,
    CONF_DIR,
    CONSTRAINTS,
    KAFKA_VERSION,
    POSTGRES_JDBC,
    PRESTO_VERSION,
    SLF4J_BINDING,
    SPARK_KAFKA_FALLBACKS,
    Layout,
    StackError,
    find_java_home,
    find_postgres_bin,
)

# Debian packages `up` installs as root when their commands are missing.
APT_PACKAGES = {
    "java17": "openjdk-17-jdk-headless",
    "mvn": "maven",
    "postgres": "postgresql",
    "etcd": "etcd-server",  # the Kubernetes API server's store (controller/devstack/kube.py)
}

ICEBERG_SPARK_RUNTIME = "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.9.2"
HMS_LISTENER = "org.apache.hive.hcatalog:hive-hcatalog-server-extensions:2.3.10"
HMS_SERVER = (
    *(f"org.apache.hive:{a}:2.3.10" for a in ("hive-metastore", "hive-common", "hive-serde", "hive-shims")),
    *(f"org.apache.hive.shims:{a}:2.3.10" for a in ("hive-shims-common", "hive-shims-0.23")),
    "org.apache.thrift:libthrift:0.14.1",
)
"""The metastore server's own classes: 2.3.10 has HIVE-26882 (``alter_table`` checks an expected
parameter value in its transaction), which makes Iceberg's lock-free commits atomic: a commit
whose table moved since it read it is refused and retried, never lost. pyspark ships 2.3.9."""

_mvn_lock = threading.Lock()


def render(template: str, **values: object) -> str:
    return Template((CONF_DIR / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def write_if_changed(path: Path, text: str, mode: int | None = None) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    tmp.replace(path)
    return True


# --- apt -----------------------------------------------------------------------------------------

def missing_system_packages() -> list[str]:
    missing = []
    if find_java_home() is None:
        missing.append(APT_PACKAGES["java17"])
    if shutil.which("mvn") is None:
        missing.append(APT_PACKAGES["mvn"])
    if find_postgres_bin() is None:
        missing.append(APT_PACKAGES["postgres"])
    if shutil.which("etcd") is None:
        missing.append(APT_PACKAGES["etcd"])
    return missing


def ensure_system_packages(layout: Layout, say: object = print) -> None:
    missing = missing_system_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError("missing system packages (run as root or install them): apt-get install -y "
                         + " ".join(missing))
    log = layout.log("apt")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"apt: installing {' '.join(missing)} (log: {log})")  # type: ignore[operator]
    procs.run(["apt-get", "update"], log=log, env=env, timeout=900)
    procs.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], log=log, env=env,
              timeout=1800)
    still = missing_system_packages()
    if still:
        raise StackError(f"apt-get install did not provide: {still} (see {log})")


# --- Maven ---------------------------------------------------------------------------------------

def m2_repo() -> Path:
    env = os.environ.get("PIPECTL_M2_REPO")
    return Path(env) if env else Path.home() / ".m2" / "repository"


def _mvn(layout: Layout, args: list[str], log: Path, java_home: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(java_home)}
    with _mvn_lock:
        procs.run(["mvn", "-B", "-q", "-Dstyle.color=never", f"-Dmaven.repo.local={m2_repo()}", *args],
                  log=log, env=env, cwd=layout.maven, timeout=1800)


def _dep_xml(coords: str, type_: str = "jar", transitive: bool = True) -> str:
    g, a, v = coords.split(":")
    none = ("<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
            if not transitive else "")
    return (f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version><type>{type_}</type>{none}</dependency>")


@dataclass(frozen=True)
class JarGroup:
    """Jars copied into .stack/jars/<name>/: ``coords`` and their runtime dependencies, optionally
    filtered to ``include`` artifact ids; ``transitive=False``: ``coords`` alone."""

    name: str
    coords: tuple[str, ...]
    include: tuple[str, ...] = ()
    transitive: bool = True

    def key(self) -> str:
        return hashlib.sha256(repr((self.coords, self.include, self.transitive)).encode()).hexdigest()[:16]


def _group_ok(layout: Layout, g: JarGroup) -> bool:
    marker = layout.jars / g.name / ".resolved"
    return marker.exists() and marker.read_text().strip() == g.key()


def _same_jars(a: Path, b: Path) -> bool:
    def listing(d: Path) -> set[tuple[str, int]]:
        return {(p.name, p.stat().st_size) for p in d.glob("*.jar")} if d.is_dir() else set()

    return b.is_dir() and listing(a) == listing(b)


def resolve_jar_groups(layout: Layout, java_home: Path, groups: list[JarGroup]) -> dict[str, list[Path]]:
    """Copy every stale group in ONE Maven run (a reactor of one module per group): each mvn
    start costs 5-20 s on a busy 2-core machine."""
    stale = [g for g in groups if not _group_ok(layout, g)]
    if stale:
        modules = []
        for g in stale:
            d = layout.maven / g.name
            d.mkdir(parents=True, exist_ok=True)
            tmp = layout.jars / f".{g.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            (d / "pom.xml").write_text(render(
                "pom.xml.tmpl", artifact=f"stack-{g.name}", output_dir=tmp,
                include_ids=",".join(g.include),
                dependencies="\n".join(_dep_xml(c, transitive=g.transitive) for c in g.coords)))
            modules.append(f"    <module>{g.name}</module>")
        agg = layout.maven / "pom.xml"
        agg.write_text(render("pom-aggregator.xml.tmpl", modules="\n".join(modules)))
        _mvn(layout, ["-f", str(agg), "dependency:copy-dependencies"], layout.log("maven"), java_home)
        for g in stale:
            out = layout.jars / g.name
            tmp = layout.jars / f".{g.name}.tmp"
            if not tmp.is_dir():
                tmp.mkdir(parents=True)  # a group whose filter matched nothing
            if _same_jars(tmp, out):
                # Leave the directory alone: running JVMs open classpath jars lazily.
                shutil.rmtree(tmp)
            else:
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
            (out / ".resolved").write_text(g.key() + "\n")
    return {g.name: sorted((layout.jars / g.name).glob("*.jar")) for g in groups}


def artifact_available(layout: Layout, java_home: Path, coords: str, packaging: str = "pom") -> bool:
    g, a, v = coords.split(":")
    local = m2_repo() / g.replace(".", "/") / a / v / f"{a}-{v}.{packaging}"
    if local.exists():
        return True
    # Maven remembers a recent miss (<file>.lastUpdated) and would only repeat it: skip the call.
    miss = local.with_name(local.name + ".lastUpdated")
    if miss.exists() and time.time() - miss.stat().st_mtime < 86400:
        return False
    try:
        _mvn(layout, ["dependency:get", f"-Dartifact={coords}:{packaging}", "-Dtransitive=false"],
             layout.log("maven"), java_home)
    except StackError:
        return False
    return local.exists()


def choose_spark_kafka_version(layout: Layout, java_home: Path, spark_version: str) -> str:
    """The spark-sql-kafka version for this Spark: the exact pyspark version when the Maven
    repository has it, else the newest 3.5.x it has (binary compatible within the 3.5 line)."""
    chosen_file = layout.jars / "spark.version"
    if chosen_file.exists():
        chosen = chosen_file.read_text().split()
        if len(chosen) == 2 and chosen[0] == spark_version:
            return chosen[1]
    minor = spark_version.split(".")[:2]
    cands = [spark_version] + [v for v in SPARK_KAFKA_FALLBACKS
                               if v != spark_version and v.split(".")[:2] == minor]
    for v in cands:
        if artifact_available(layout, java_home, f"org.apache.spark:spark-sql-kafka-0-10_2.12:{v}"):
            chosen_file.write_text(f"{spark_version} {v}\n")
            return v
    raise StackError(f"no spark-sql-kafka-0-10_2.12 {'.'.join(minor)}.x found in the Maven repository "
                     f"(tried {cands}; see {layout.log('maven')})")


def stack_jar_groups(spark_kafka_version: str) -> list[JarGroup]:
    v = spark_kafka_version
    return [
        JarGroup("metastore", (POSTGRES_JDBC,)),
        # The metastore's notification log (DbNotificationListener): pipectl's live-state snapshot
        # reads what changed since its last pass in one call (adapters/hive_metastore.py). Its
        # classes need only the metastore's, which pyspark ships; its own dependencies are left out.
        JarGroup("metastore-listener", (HMS_LISTENER,), transitive=False),
        JarGroup("metastore-server", HMS_SERVER, transitive=False),
        JarGroup("kafka", (f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}", SLF4J_BINDING)),
        # spark-avro: pipectl-managed jobs decode schemaless Avro values with from_avro.
        JarGroup("spark", (f"org.apache.spark:spark-sql-kafka-0-10_2.12:{v}",
                           f"org.apache.spark:spark-token-provider-kafka-0-10_2.12:{v}",
                           f"org.apache.spark:spark-avro_2.12:{v}"),
                 include=("spark-sql-kafka-0-10_2.12", "spark-token-provider-kafka-0-10_2.12",
                          "kafka-clients", "commons-pool2", "spark-avro_2.12")),
        JarGroup("presto-asm", tuple(f"org.ow2.asm:{a}:{PRESTO_ASM_VERSION}" for a in _ASM_ARTIFACTS)),
        # Iceberg's Spark runtime is one shaded jar; every Spark process gets it (driver classpath) with
        # the catalog `iceberg` on the shared metastore (conf/spark-defaults.conf.tmpl).
        JarGroup("iceberg", (ICEBERG_SPARK_RUNTIME,), include=("iceberg-spark-runtime-3.5_2.12",)),
    ]


# --- Presto --------------------------------------------------------------------------------------

PRESTO_PLUGINS = ("hive-hadoop2", "iceberg", "kafka")
# Presto 0.287 ships ASM 9.0, which cannot read Java 17 class files (major version 61) when the
# drift codec generator computes stack frames: "Unsupported class file major version 61".
# ASM keeps its API stable within 9.x, so the jars are swapped for a release that knows Java 17.
PRESTO_ASM_VERSION = "9.7.1"
_ASM_ARTIFACTS = ("asm", "asm-tree", "asm-analysis", "asm-util", "asm-commons")


def _patch_presto_asm(layout: Layout, home: Path) -> int:
    jars = {j.name.rsplit("-", 1)[0]: j for j in (layout.jars / "presto-asm").glob("asm*.jar")}
    if len(jars) < len(_ASM_ARTIFACTS):
        raise StackError(f"ASM {PRESTO_ASM_VERSION} jars missing from {layout.jars / 'presto-asm'}")
    swapped = 0
    for d in [home / "lib", *(p for p in (home / "plugin").iterdir() if p.is_dir())]:
        for old in d.glob("asm*.jar"):
            m = re.fullmatch(r"(asm(?:-[a-z]+)?)-(\d[\w.]*)\.jar", old.name)
            if not m or m.group(1) not in jars or m.group(2) == PRESTO_ASM_VERSION:
                continue
            old.unlink()
            shutil.copy2(jars[m.group(1)], d / jars[m.group(1)].name)
            swapped += 1
    return swapped


def install_presto(layout: Layout, java_home: Path) -> Path:
    """Unpack lib/ and the hive plugin of presto-server-<v>.tar.gz from Maven into .stack/presto
    (after resolve_jar_groups: it needs the presto-asm group)."""
    home = layout.stack / "presto" / f"presto-server-{PRESTO_VERSION}"
    key = f"{PRESTO_VERSION} plugins={','.join(PRESTO_PLUGINS)} asm={PRESTO_ASM_VERSION}"
    if (home / ".installed").exists() and (home / ".installed").read_text().strip() == key:
        return home
    coords = f"com.facebook.presto:presto-server:{PRESTO_VERSION}"
    tarball = m2_repo() / "com/facebook/presto/presto-server" / PRESTO_VERSION / \
        f"presto-server-{PRESTO_VERSION}.tar.gz"
    if not tarball.exists():
        _mvn(layout, ["dependency:get", f"-Dartifact={coords}:tar.gz", "-Dtransitive=false"],
             layout.log("maven"), java_home)
    if not tarball.exists():
        raise StackError(f"{coords}:tar.gz was not downloaded (see {layout.log('maven')})")
    tmp = home.with_name(home.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = f"presto-server-{PRESTO_VERSION}/"
    keep = ("lib/", "bin/", *(f"plugin/{p}/" for p in PRESTO_PLUGINS))
    with tarfile.open(tarball, "r|gz") as tf:
        for m in tf:
            rel = m.name[len(prefix):] if m.name.startswith(prefix) else ""
            if rel and rel.startswith(keep):
                m.name = rel
                tf.extract(m, tmp, filter="data")
    if not any((tmp / "lib").glob("presto-main-*.jar")):
        raise StackError(f"{tarball} did not contain lib/presto-main-*.jar")
    _patch_presto_asm(layout, tmp)
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    (home / ".installed").write_text(key + "\n")
    return home


# --- Airflow -------------------------------------------------------------------------------------

UV_VERSION = "0.13.8"


def _install_uv(layout: Layout, python: str, log: Path) -> Path:
    """uv from PyPI into .stack/tools/uv (by the caller's pip; a single binary)."""
    target = layout.stack / "tools" / "uv"
    uv = target / "bin" / "uv"
    if not uv.exists():
        shutil.rmtree(target, ignore_errors=True)
        procs.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target",
                   str(target), f"uv=={UV_VERSION}"], log=log, timeout=600)
    if not uv.exists():
        raise StackError(f"uv {UV_VERSION} did not install a binary at {uv}")
    return uv


def install_airflow_venv(layout: Layout, python: str) -> Path:
    """apache-airflow into its own venv with the frozen constraints (never into pipectl's venv).

    uv creates the venv and installs the ~145 pinned packages in ~25 s, where `python -m venv`
    plus pip took 3-9 minutes on a busy 2-core machine; plain venv + pip is the fallback.
    """
    venv = layout.airflow_venv
    key = f"{AIRFLOW_VERSION} {hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:16]}"
    marker = venv / ".pipectl-installed"
    if marker.exists() and marker.read_text().strip() == key and (venv / "bin" / "airflow").exists():
        return venv
    log = layout.log("airflow-install")
    vpy = str(venv / "bin" / "python")
    spec = [f"apache-airflow=={AIRFLOW_VERSION}", "-c", str(CONSTRAINTS)]
    try:
        uv = str(_install_uv(layout, python, log))
        if not (venv / "bin" / "python").exists():
            procs.run([uv, "venv", "-q", "--python", python, str(venv)], log=log, timeout=300)
        procs.run([uv, "pip", "install", "-q", "--python", vpy, "--compile-bytecode", *spec], log=log,
                  timeout=1800)
    except StackError as e:
        with open(log, "a") as fh:
            fh.write(f"uv failed, falling back to venv + pip: {e}\n")
        shutil.rmtree(venv, ignore_errors=True)
        procs.run([python, "-m", "venv", str(venv)], log=log, timeout=600)
        procs.run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", *spec], log=log,
                  timeout=1800)
    marker.write_text(key + "\n")
    return venv
