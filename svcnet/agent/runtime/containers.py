"""Containers as processes: what a container runs (argv, env, user, files) and how it is started.

Theory of operation
- The pure half turns a pod and a container into a `Launch`: the argv (Kubernetes' `$(VAR)`
  expansion of command/args, then `svcnet.images.registry.resolve`), the environment (service
  variables, then the container's `env` with `valueFrom.fieldRef`, each value expanded against
  the ones before it; `envFrom` and configMapKeyRef from ConfigMaps), the user and group (container securityContext over pod securityContext,
  default 65534:65534), the working directory, and the pod's own /etc files (`pod_files`).
  Problems are `LaunchError(reason, message)`, which the pod shows as a waiting reason.
- Built-in images run the venv's Python, which an unprivileged user may not be able to exec (it
  can live under /root). They are started as root through `svcnet.agent.runas`, which makes the
  interpreter readable in the container's private mount namespace and then drops to the
  container's user before the image's code runs. Host commands (`sh -c ...`) are exec'd as the
  container's user directly.
- `spawn(launch, ...)` forks and execs the process directly inside the pod: in the child, before
  exec, it becomes a session leader (so it survives the agent and can be signalled as a
  group), joins the pod's network namespace and gets a private mount + UTS namespace with the
  pod's /etc/resolv.conf, /etc/hosts, /etc/hostname (`nsenter.enter_pod`), changes directory and
  drops privileges. Its stdout and stderr are pipes to a log writer process of its own
  (logwriter.py, conmon's role) that writes the CRI-format log file; nothing passes through
  the agent, so containers and their logging outlive it. It blocks (fork + exec): call it off the loop.
- The runtime reaps its children itself (`reap`) through a pidfd; `subprocess` is told to
  forget them. A process that is not our child (adopted after an agent restart) can still be
  watched, but its exit status is only known if we catch it as a zombie.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from svcnet.agent.nsenter import enter_pod
from svcnet.images.registry import resolve, split_image

STATE_FILE = "state.json"  # a pod's record in its directory (pod.py writes it)


def pod_dir(pods_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """A pod's directory under the agent's `<data-dir>/pods`: its record, files and logs."""
    return pods_dir / f"{namespace}_{name}_{uid}"


def pod_mounts(directory: Path) -> dict[str, str]:
    """The bind mounts of a pod's containers (enter_pod): node path -> the pod's own file in
    its directory."""
    return {"/etc/resolv.conf": str(directory / "resolv.conf"),
            "/etc/hosts": str(directory / "etc.hosts"),
            "/etc/hostname": str(directory / "etc.hostname")}


DEFAULT_UID = DEFAULT_GID = 65534
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class LaunchError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    workdir: str
    builtin: bool = False
    image_id: str = ""


@dataclass
class Spawned:
    pid: int
    start_ticks: int
    pidfd: int | None = None
    child: bool = True   # our child: we reap it and learn its exit status


# ---- the pure half ----------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: $$ escapes, unknown references stay as written."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, text)


def container_hash(container: dict) -> str:
    """Changes when the container must be restarted (only `image` is mutable in a pod)."""
    return hashlib.sha1(json.dumps(container.get("image", "")).encode()).hexdigest()[:12]


def pod_hostname(pod: dict) -> str:
    spec = pod.get("spec") or {}
    name = spec.get("hostname") or pod["metadata"]["name"]
    return name[:63].rstrip("-.")


def _field_ref(pod: dict, path: str, ctx: dict[str, str]) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": ctx.get("nodeName", spec.get("nodeName", "")),
        "spec.serviceAccountName": spec.get("serviceAccountName")
        or spec.get("serviceAccount") or "default",
        "status.podIP": ctx.get("podIP", ""),
        "status.podIPs": ctx.get("podIP", ""),
        "status.hostIP": ctx.get("hostIP", ""),
        "status.hostIPs": ctx.get("hostIP", ""),
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise LaunchError("CreateContainerConfigError",
                      f'unsupported fieldRef.fieldPath "{path}"')


ConfigMapGetter = Callable[[str, str], "dict | None"]  # (namespace, name) -> ConfigMap or None
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # validation.IsEnvVarName
NO_SECRETS = "svcnet does not serve Secrets"


def _config_error(message: str) -> LaunchError:
    return LaunchError("CreateContainerConfigError", message)


def _lookup(kind: str, namespace: str, name: str, config_maps: ConfigMapGetter | None,
            optional: bool) -> dict | None:
    """The referenced ConfigMap (None if optional and absent); a config error otherwise.
    Secrets are never there: svcnet does not serve them."""
    found = config_maps(namespace, name) if kind == "configMap" and config_maps else None
    if found is None and not optional:
        raise _config_error(f'{kind.lower()} "{name}" not found'
                            + (f" ({NO_SECRETS})" if kind == "secret" else ""))
    return found


def container_env(pod: dict, container: dict, service_env: dict[str, str],
                  ctx: dict[str, str], config_maps: ConfigMapGetter | None = None,
                  warnings: list[str] | None = None) -> dict[str, str]:
    """The process environment, in the kubelet's order of precedence: PATH/HOSTNAME, the
    service variables, `envFrom` (ConfigMaps, with their prefix), then the container's `env`
    (values expanded against what came before, fieldRefs, configMapKeyRefs).

    `ctx` holds podIP, hostIP, nodeName; `config_maps(namespace, name)` finds ConfigMaps.
    Raises LaunchError("CreateContainerConfigError") with the kubelet's message for a missing
    ConfigMap or key that is not optional, and for any Secret that is not optional. Keys of an
    envFrom source that are not valid variable names are skipped and reported in `warnings`
    (the kubelet's InvalidEnvironmentVariableNames event)."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": pod_hostname(pod)}
    env.update(service_env or {})
    for source in container.get("envFrom") or []:
        kind = "configMap" if source.get("configMapRef") else "secret"
        ref = source.get(f"{kind}Ref") or {}
        found = _lookup(kind, namespace, ref.get("name", ""), config_maps,
                        bool(ref.get("optional")))
        invalid = []
        for key, value in sorted(((found or {}).get("data") or {}).items()):
            name = (source.get("prefix") or "") + key
            if _ENV_NAME.match(name):
                env[name] = value
            else:
                invalid.append(name)
        if invalid and warnings is not None:
            warnings.append(f"Keys [{', '.join(invalid)}] from the EnvFrom {kind} "
                            f"{namespace}/{ref.get('name', '')} were skipped since they are "
                            f"considered invalid environment variable names.")
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            continue
        source = item.get("valueFrom") or {}
        if item.get("value") or not source:
            env[name] = expand(str(item.get("value", "")), env)
        elif source.get("fieldRef"):
            env[name] = _field_ref(pod, source["fieldRef"].get("fieldPath", ""), ctx)
        elif source.get("configMapKeyRef") or source.get("secretKeyRef"):
            kind = "configMap" if source.get("configMapKeyRef") else "secret"
            ref = source[f"{kind}KeyRef"]
            optional = bool(ref.get("optional"))
            found = _lookup(kind, namespace, ref.get("name", ""), config_maps, optional)
            if found is None:
                continue
            value = (found.get("data") or {}).get(ref.get("key", ""))
            if value is None:
                if optional:
                    continue
                raise _config_error(f"couldn't find key {ref.get('key', '')} in ConfigMap "
                                    f"{namespace}/{ref.get('name', '')}")
            env[name] = value
        else:
            kind = next(iter(source))
            raise _config_error(f'env "{name}": valueFrom.{kind} is not supported by svcnet')
    return env


def run_as(pod: dict, container: dict) -> tuple[int, int]:
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    uid = DEFAULT_UID if uid is None else int(uid)
    gid = (DEFAULT_GID if uid != 0 else 0) if gid is None else int(gid)
    return uid, gid


def is_builtin(argv: list[str]) -> bool:
    return len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m"


def unmounted_volumes(container: dict) -> str | None:
    """The FailedMount Warning for a container with volumeMounts (None without): containers are
    processes on the node's own filesystem, and svcnet mounts no volumes, so a container runs
    without them and says so, never silently."""
    mounts = [f"{m.get('name')} at {m.get('mountPath')}" for m in container.get("volumeMounts") or ()]
    if not mounts:
        return None
    return ("svcnet runs containers as processes on the node's filesystem and mounts no volumes: "
            f"not mounted: {', '.join(mounts)}")


def launch_for(pod: dict, container: dict, service_env: dict[str, str],
               ctx: dict[str, str], config_maps: ConfigMapGetter | None = None,
               warnings: list[str] | None = None) -> Launch:
    """Everything needed to start `container`, or LaunchError."""
    env = container_env(pod, container, service_env, ctx, config_maps, warnings)
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    image = container.get("image") or ""
    argv = resolve(image, command, args)
    if argv is None:
        raise LaunchError("ErrImageNeverPull",
                          f'Container image "{image}" is not a built-in svcnet image and the '
                          f'container has no command: svcnet cannot run it')
    uid, gid = run_as(pod, container)
    builtin = is_builtin(argv)
    if builtin:
        argv = [sys.executable, "-u", "-m", "svcnet.agent.runas", "--private-mounts",
                str(uid), str(gid), "--", argv[2], *argv[3:]]
    registry, repo = split_image(image)
    image_id = f"svcnet://{'builtin' if builtin else 'host'}/{registry + '/' if registry else ''}{repo}"
    if uid == 0 and "HOME" not in env:
        env["HOME"] = "/root"
    env.setdefault("HOME", "/")
    return Launch(argv=argv, env=env, uid=uid, gid=gid,
                  workdir=container.get("workingDir") or "/", builtin=builtin,
                  image_id=image_id)


def node_resolver(path: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf; empty if it cannot be read."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    try:
        text = Path(path).read_text()
    except OSError:
        return nameservers, searches, options
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return nameservers, searches, options


def pod_files(pod: dict, pod_ip: str | None, cluster_dns: str, cluster_domain: str,
              node_resolv: str = "/etc/resolv.conf") -> dict[str, str]:
    """The pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, as the kubelet writes them."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    ns = meta.get("namespace") or "default"
    hostname = pod_hostname(pod)
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if spec.get("hostNetwork") and policy == "ClusterFirst":
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirst":
        # the kubelet: the cluster's search domains, then the node's (from --resolv-conf)
        nameservers = [cluster_dns]
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        searches += [d for d in node_resolver(node_resolv)[1] if d not in searches]
        options = ["ndots:5"]
    elif policy == "Default":  # the node's resolver configuration (--resolv-conf)
        nameservers, searches, options = node_resolver(node_resolv)
    config = spec.get("dnsConfig") or {}
    for n in config.get("nameservers") or []:
        if n not in nameservers:
            nameservers.append(n)
    for s in config.get("searches") or []:
        if s not in searches:
            searches.append(s)
    for o in config.get("options") or []:
        name = o.get("name")
        if not name:
            continue
        options = [x for x in options if x.split(":", 1)[0] != name]
        options.append(f"{name}:{o['value']}" if o.get("value") is not None else name)
    resolv = "".join(f"nameserver {n}\n" for n in nameservers[:3])
    if searches:
        resolv += "search " + " ".join(searches[:32]) + "\n"
    if options:
        resolv += "options " + " ".join(options) + "\n"

    hosts = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
             "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
             "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
    if pod_ip:
        subdomain = spec.get("subdomain")
        if subdomain:
            fqdn = f"{hostname}.{subdomain}.{ns}.svc.{cluster_domain}"
            hosts += f"{pod_ip}\t{fqdn}\t{hostname}\n"
        else:
            hosts += f"{pod_ip}\t{hostname}\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        hosts += "\n# Entries added by HostAliases.\n"
        for a in aliases:
            if a.get("ip") and a.get("hostnames"):
                hosts += f"{a['ip']}\t" + "\t".join(a["hostnames"]) + "\n"
    return {"resolv.conf": resolv, "hosts": hosts, "hostname": hostname + "\n"}


# ---- processes --------------------------------------------------------------------------------

def proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if gone/zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(pid: int | None, start_ticks: int | None) -> bool:
    return bool(pid) and start_ticks is not None and proc_start_ticks(pid) == start_ticks


def zombie_exit_status(pid: int, start_ticks: int) -> int | None:
    """The wait status of a zombie that is not our child (field 52 of stat), if still there."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    if fields[0] != b"Z" or int(fields[19]) != start_ticks or len(fields) < 50:
        return None
    return int(fields[49])


def processes_in_netns(holder_pid: int) -> list[int]:
    """The PIDs of the processes in the network namespace of `holder_pid` (itself included)."""
    try:
        target = os.stat(f"/proc/{holder_pid}/ns/net").st_ino
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def reap(pid: int) -> int | None:
    """The wait status of our exited child `pid` (reaping it), or None if it is not our child
    or has not exited."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if got == pid else None


def decode_wait_status(status: int) -> tuple[int, int | None]:
    """(exitCode as Kubernetes reports it, signal or None)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return 255, None


def signal_group(pid: int, sig: int, start_ticks: int | None = None) -> bool:
    """Signal the container's process group (its leader started a session); False if none.

    When the group is gone but the leader is not (it left its group), the leader is signalled
    alone, only if `start_ticks` proves it is still the same process."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    if start_ticks is None or not alive(pid, start_ticks):
        return False
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False


LOG_WRITER = str(Path(__file__).with_name("logwriter.py"))


def start_log_writer(log_path: Path, rotate: tuple[int, int] | None = None) -> tuple[int, int]:
    """Start the container's log writer (logwriter.py, in a session of its own so that it
    outlives the agent) on two new pipes; returns the write ends for the container's stdout
    and stderr (the caller closes them once the container has them). `rotate`: (max size,
    max files) instead of the kubelet's defaults."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))  # exists at once
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        # Dropped at once: subprocess reaps a dropped child that is still running when a later
        # Popen starts (nothing here waits for "any child", so that cannot race).
        subprocess.Popen([sys.executable, "-I", "-S", LOG_WRITER, str(log_path), str(out_r),
                          str(err_r), *map(str, rotate or ())], pass_fds=(out_r, err_r), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                         start_new_session=True)
    except BaseException:
        os.close(out_w)
        os.close(err_w)
        raise
    finally:
        os.close(out_r)
        os.close(err_r)
    return out_w, err_w


def become_container(netns: str, hostname: str, files: dict[str, str], workdir: str,
                     ids: tuple[int, int] | None) -> None:
    """In a forked child, before exec (system calls only): join the pod (network namespace,
    private mounts of its files, hostname), go to `workdir`, and become `ids` (uid, gid; None:
    stay root, for built-in images)."""
    enter_pod(netns, hostname, files, None, None)
    os.chdir(workdir)
    if ids is not None:
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])


def spawn(launch: Launch, netns: str, hostname: str, files: dict[str, str],
          log_path: Path, host_network: bool = False) -> Spawned:
    """Fork + exec the container inside the pod (blocking), its output going through a log
    writer to `log_path`. Raises LaunchError("StartError")."""
    try:
        out_w, log_err_w = start_log_writer(log_path)
    except OSError as e:
        raise LaunchError("StartError", f"failed to start the container's log writer: {e}") from e
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    exec_as = None if launch.builtin else (launch.uid, launch.gid)

    def child() -> None:
        # Runs between fork and exec: keep it to system calls (no imports, no logging).
        try:
            become_container(netns, hostname, files, launch.workdir, exec_as)
        except BaseException as e:  # noqa: BLE001 - reported to the parent through the pipe
            os.write(err_w, f"{type(e).__name__}: {e}".encode()[:1000])
            raise

    failure: BaseException | None = None
    try:
        proc = subprocess.Popen(launch.argv, env=launch.env, stdin=subprocess.DEVNULL,
                                stdout=out_w, stderr=log_err_w, preexec_fn=child,
                                start_new_session=True, close_fds=True)
    except (OSError, subprocess.SubprocessError) as e:
        failure = e
    finally:
        os.close(out_w)
        os.close(log_err_w)
        os.close(err_w)
    try:
        detail = os.read(err_r, 1000).decode(errors="replace") if failure else ""
    finally:
        os.close(err_r)
    if isinstance(failure, OSError) and not detail:
        if failure.errno in (errno.ENOENT, errno.EACCES):
            detail = f'exec: "{launch.argv[0]}": executable file not found in $PATH'
        else:
            detail = f"exec {launch.argv[0]}: {failure.strerror}"
    if failure is not None:
        raise LaunchError("StartError", f"failed to start container process: {detail or failure}")
    # We reap this child ourselves (through its pidfd): make subprocess forget it, so it can
    # never waitpid() it (or a later process reusing the PID) behind our back.
    proc.returncode = 0
    pid = proc.pid
    ticks = proc_start_ticks(pid)
    pidfd = pidfd_open(pid)
    return Spawned(pid=pid, start_ticks=ticks or 0, pidfd=pidfd, child=True)


def run_in_pod(argv: list[str], env: dict[str, str], netns: str, hostname: str,
               files: dict[str, str], uid: int, gid: int, timeout: float) -> tuple[int | None, str]:
    """Run a command inside the pod (exec probes, lifecycle hooks): (exit code | None on timeout,
    output). Blocking."""
    def child() -> None:
        become_container(netns, hostname, files, "/", (uid, gid))

    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=child,
                                start_new_session=True)
    except (OSError, subprocess.SubprocessError) as e:
        return 126, f"exec failed: {e}"
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace")[-10240:]
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"command timed out after {timeout:g}s"


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() for back-off durations: 500ms, 10s, 1m20s, 5m0s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:g}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"
