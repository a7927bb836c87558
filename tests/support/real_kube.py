"""A real kube-apiserver and etcd for the tests, started the way envtest starts them.

The binaries come from `tests/kube/build.sh` (pinned Go modules, built once into a
cache folder; `make test` runs it and passes FINETUNE_KUBE_BIN_DIR). `RealKube` runs
etcd and kube-apiserver on free 127.0.0.1 ports with serving certificates and a
service-account key in a temporary folder, RBAC authorization, a static token file
(an admin in system:masters and the operator's service-account identities) and an
audit log, waits for `/readyz`, installs our CRD, KubeRay's CRDs and kopf's peering
CRDs, and writes a kubeconfig per identity. There is no kubelet, scheduler or
KubeRay: tests play KubeRay by writing RayJob status through the status subresource.
kube-controller-manager (garbage collector and namespace controller only) starts on
demand.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import requests
import urllib3
import yaml

from tests.support.helpers import free_port, stop
from tests.support.kube_emulator import kopf_peering_crds
from tests.support.paths import FINETUNE_CRD, KUBERAY_CRDS, REPO
from tests.support.real_kube_pki import write_pki

JSON = dict[str, Any]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
ADMIN = "admin"
# The chart's ServiceAccount is finetune-system/<release fullname>; a token-file user
# with the ServiceAccount's user name and groups is what RBAC bindings to it match.
OPERATOR_NAMESPACE = "finetune-system"
OPERATOR_ACCOUNTS = ("finetune-operator", "ftop-cluster", "ftop-namespaced")

# Plural and scope of the kinds the tests write, as the server's discovery has them.
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False), "ConfigMap": ("configmaps", True), "Secret": ("secrets", True),
    "Pod": ("pods", True), "Event": ("events", True), "Job": ("jobs", True),
    "ServiceAccount": ("serviceaccounts", True),
    "ClusterRole": ("clusterroles", False), "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True), "RoleBinding": ("rolebindings", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "FineTuneJob": ("finetunejobs", True), "RayJob": ("rayjobs", True), "RayCluster": ("rayclusters", True),
    "ClusterKopfPeering": ("clusterkopfpeerings", False), "KopfPeering": ("kopfpeerings", True),
}


def service_account_user(account: str, namespace: str = OPERATOR_NAMESPACE) -> str:
    return f"system:serviceaccount:{namespace}:{account}"


def _version_of(module: str) -> str:
    for line in (REPO / "tests" / "kube" / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
    raise LookupError(f"{module} is not pinned in tests/kube/go.mod")


def kube_bin_dir() -> Path:
    """Where build.sh puts the binaries (FINETUNE_KUBE_BIN_DIR overrides it)."""
    if os.environ.get("FINETUNE_KUBE_BIN_DIR"):
        return Path(os.environ["FINETUNE_KUBE_BIN_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = f"{_version_of('k8s.io/kubernetes')}-etcd-{_version_of('go.etcd.io/etcd/server/v3')}"
    return cache / "finetune-operator" / "kube" / key / "bin"


def missing_binaries() -> list[str]:
    folder = kube_bin_dir()
    return [name for name in BINARIES if not os.access(folder / name, os.X_OK)]


def api_path(api_version: str, plural: str, namespace: Optional[str] = None, name: Optional[str] = None,
             subresource: Optional[str] = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return path + (f"/{name}" if name else "") + (f"/{subresource}" if subresource else "")


def object_path(obj: JSON, with_name: bool = True) -> str:
    plural, namespaced = KINDS[obj["kind"]]
    meta = obj.get("metadata") or {}
    namespace = (meta.get("namespace") or "default") if namespaced else None
    return api_path(obj["apiVersion"], plural, namespace, meta.get("name") if with_name else None)


def _load_yaml(path: Path) -> list[JSON]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]


class RealKube:
    """etcd + kube-apiserver (+ kube-controller-manager on demand) in `workdir`."""

    def __init__(self, workdir: Path, bin_dir: Optional[Path] = None) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir or kube_bin_dir()
        self.processes: dict[str, subprocess.Popen] = {}
        self.tokens = {ADMIN: secrets.token_hex(16),
                       **{service_account_user(a): secrets.token_hex(16) for a in OPERATOR_ACCOUNTS}}
        self.audit_log = workdir / "audit.log"
        self.port = 0
        self.url = ""
        self.session = requests.Session()

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        process = subprocess.Popen([str(self.bin_dir / name), *args], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=self.workdir)
        log.close()
        self.processes[name] = process
        return process

    def log_tail(self, name: str, size: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def _wait(self, what: str, name: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.processes[name].returncode}:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not reached within {timeout} s:\n{self.log_tail(name)}")
            time.sleep(0.2)

    def start(self) -> "RealKube":
        pki = write_pki(self.workdir / "pki")
        self.ca_cert = pki.ca_cert
        client, peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            "--name=default", f"--data-dir={self.workdir / 'etcd'}", "--unsafe-no-fsync",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}", "--log-level=warn"])
        self._wait("etcd healthy", "etcd", lambda: self._ok(f"{etcd_url}/health", verify=False), 60)

        tokens = self.workdir / "tokens.csv"
        lines = [f'{self.tokens[ADMIN]},{ADMIN},admin-uid,"system:masters"']
        for account in OPERATOR_ACCOUNTS:
            user = service_account_user(account)
            lines.append(f'{self.tokens[user]},{user},{account}-uid,'
                         f'"system:serviceaccounts,system:serviceaccounts:{OPERATOR_NAMESPACE}"')
        tokens.write_text("\n".join(lines) + "\n")
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                          "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}", f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}", f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC", f"--token-auth-file={tokens}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            # 127.0.0.1 cannot back the `kubernetes` Service endpoints; no pod needs them.
            "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            # No controller creates the `default` ServiceAccount, so pods would be refused.
            "--disable-admission-plugins=ServiceAccount",
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
            f"--cert-dir={self.workdir / 'certs'}", "--v=0"])
        self._wait("kube-apiserver /readyz", "kube-apiserver",
                   lambda: self._ok(f"{self.url}/readyz", verify=str(pki.ca_cert)), 120)
        self.admin_kubeconfig = self.write_kubeconfig(ADMIN)
        kuberay = sorted(KUBERAY_CRDS.glob("*.yaml"))
        if not kuberay:
            raise FileNotFoundError(f"no KubeRay CRDs in {KUBERAY_CRDS} (set FINETUNE_SHARED_DIR)")
        self.install_crds([*kopf_peering_crds(), *_load_yaml(FINETUNE_CRD),
                           *(doc for path in kuberay for doc in _load_yaml(path))])
        return self

    @staticmethod
    def _ok(url: str, verify: Any) -> bool:
        try:
            with urllib3.warnings.catch_warnings():
                urllib3.warnings.simplefilter("ignore")
                return requests.get(url, verify=verify, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start_controller_manager(self) -> None:
        """kube-controller-manager with only the garbage collector and namespace controller."""
        if "kube-controller-manager" in self.processes:
            return
        # The log is appended to across starts: look only at what this start writes.
        log = self.workdir / "kube-controller-manager.log"
        seen = log.stat().st_size if log.exists() else 0
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.admin_kubeconfig}", "--controllers=garbagecollector,namespace",
            "--leader-elect=false", "--secure-port=0", "--concurrent-gc-syncs=5"])
        def started() -> bool:
            with open(log, "rb") as stream:
                stream.seek(seen)
                return b"garbage collector" in stream.read().lower()
        self._wait("kube-controller-manager running", "kube-controller-manager", started, 60)

    def stop_controller_manager(self) -> None:
        """Stop the garbage collector again, so later tests' objects with made-up owners stay."""
        process = self.processes.pop("kube-controller-manager", None)
        if process is not None:
            stop(process)

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            stop(self.processes[name])
        self.session.close()

    # ------------------------------------------------------------------ clients

    def write_kubeconfig(self, user: str, namespace: str = "default") -> Path:
        safe = user.replace(":", "_")
        path = self.workdir / f"kubeconfig-{safe}"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.ca_cert)}}],
            "users": [{"name": safe, "user": {"token": self.tokens[user]}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": safe, "namespace": namespace}}],
        }))
        return path

    def request(self, method: str, path: str, body: Any = None, *, user: str = ADMIN,
                content_type: str = "application/json", **params: Any) -> requests.Response:
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {self.tokens[user]}"}
        data = None if body is None else json.dumps(body)
        # verify= per request: requests lets REQUESTS_CA_BUNDLE override a session's.
        return self.session.request(method, self.url + path, data=data, params=params or None,
                                    headers=headers, timeout=30, verify=str(self.ca_cert))

    def ok(self, response: requests.Response) -> JSON:
        assert response.status_code < 300, f"{response.request.method} {response.url}: " \
                                           f"{response.status_code} {response.text[:2000]}"
        return response.json()

    def create(self, obj: JSON, **params: Any) -> JSON:
        return self.ok(self.request("POST", object_path(obj, with_name=False), obj, **params))

    def apply_all(self, objects: Iterable[JSON]) -> list[JSON]:
        """Server-side apply, as `kubectl apply --server-side` does."""
        return [self.ok(self.request("PATCH", object_path(obj), obj, content_type="application/apply-patch+yaml",
                                     fieldManager="finetune-tests", force="true")) for obj in objects]

    def get(self, path: str) -> Optional[JSON]:
        response = self.request("GET", path)
        return None if response.status_code == 404 else self.ok(response)

    def patch_status(self, path: str, status: JSON) -> JSON:
        return self.ok(self.request("PATCH", path + "/status", {"status": status},
                                    content_type="application/merge-patch+json"))

    def delete(self, path: str, **params: Any) -> None:
        response = self.request("DELETE", path, **params)
        assert response.status_code in (200, 202, 404), response.text

    def create_namespace(self, name: str) -> None:
        response = self.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": name}})
        assert response.status_code in (201, 409), response.text

    def wait_for(self, path: str, predicate: Callable[[Optional[JSON]], Any], timeout: float = 30.0,
                 what: str = "") -> Optional[JSON]:
        """Poll `path` until `predicate(object or None)` holds; fail with its last state."""
        deadline = time.monotonic() + timeout
        while True:
            last = self.get(path)
            if predicate(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or path} not reached within {timeout} s; "
                                     f"last seen: {json.dumps(last)[:2000]}")
            time.sleep(0.1)

    def install_crds(self, crds: list[JSON]) -> None:
        for crd in crds:
            response = self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            assert response.status_code in (201, 409), response.text
        for crd in crds:
            self.wait_for(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                          lambda o: any(c["type"] == "Established" and c["status"] == "True"
                                        for c in ((o or {}).get("status") or {}).get("conditions") or []))
        # Established comes before discovery lists the resource, and clients go by discovery.
        for crd in crds:
            spec = crd["spec"]
            for version in spec["versions"]:
                self.wait_for(f"/apis/{spec['group']}/{version['name']}",
                              lambda o: any(r["name"] == spec["names"]["plural"] for r in (o or {}).get("resources", [])),
                              what=f"discovery of {spec['names']['plural']}.{spec['group']}/{version['name']}")

    def audit_events(self, user: Optional[str] = None) -> list[JSON]:
        """The audit log's ResponseComplete events (all, or one user's)."""
        events = []
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete" and (user is None or event["user"]["username"] == user):
                events.append(event)
        return events
