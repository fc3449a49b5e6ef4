#!/usr/bin/env python3
"""A deployment driven from Python through Cutover's control API.

What a platform tool does: connect with an operator's identity (mutual
TLS), check a spec, submit it with a request id (safe to retry), and follow
the rollout to its end. See docs/api.md.

    python3 examples/python/cutover_client.py \\
        --coordinator coordinator.example:7443 \\
        --ca ca.crt --identity admin.pem \\
        --spec web.toml --version 1.4.2 \\
        --artifact https://artifacts.example/web-1.4.2.tar.gz --sha256 9f2c...

Needs grpcio and grpcio-tools (Debian: python3-grpcio python3-grpc-tools).
The stubs are generated from the repository's proto/ on first use.

Exit code: 0 succeeded, 3 rolled back, 4 aborted, 2 failed, 1 could not
start; as `cutover deploy --watch`.
"""

import argparse
import hashlib
import os
import sys
import tempfile
import uuid

import grpc

# Every server certificate of a Cutover cluster carries this name, whatever
# address it is reached at: clients check it instead of the address.
SERVER_NAME = "coordinator.cutover"

TERMINAL = {"succeeded": 0, "rolled_back": 3, "aborted": 4, "failed": 2}

PROTOS = ("agent.proto", "control.proto", "spec.proto")


def stubs():
    """Imports the generated modules, generating them first if needed."""
    here = os.path.dirname(os.path.abspath(__file__))
    proto_root = os.path.join(here, "..", "..", "proto")
    # Keyed by the protos' content: changed protos get fresh stubs.
    digest = hashlib.sha256()
    for f in PROTOS:
        digest.update(open(os.path.join(proto_root, "cutover", "v1", f), "rb").read())
    out = os.path.join(tempfile.gettempdir(), f"cutover-python-stubs-{digest.hexdigest()[:12]}")
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(os.path.join(out, "cutover", "v1", "control_pb2_grpc.py")):
        from grpc_tools import protoc

        # google/protobuf/*.proto (Timestamp) ship with grpc_tools.
        wkt = os.path.join(os.path.dirname(protoc.__file__), "_proto")

        def generate(root):
            return protoc.main(
                [
                    "protoc",
                    f"-I{root}",
                    f"-I{wkt}",
                    f"--python_out={out}",
                    f"--grpc_python_out={out}",
                ]
                + [f"cutover/v1/{f}" for f in PROTOS]
            )

        if generate(proto_root) != 0:
            # An older protoc (Debian 12's grpc-tools) cannot read proto3
            # `optional`. Without the label a field is encoded the same; it
            # only loses "was it set" (read it as 0 when absent).
            plain = tempfile.mkdtemp()
            os.makedirs(os.path.join(plain, "cutover", "v1"))
            for f in PROTOS:
                text = open(os.path.join(proto_root, "cutover", "v1", f)).read()
                text = "\n".join(
                    line.replace("optional ", "", 1) if line.lstrip().startswith("optional ") else line
                    for line in text.splitlines()
                )
                open(os.path.join(plain, "cutover", "v1", f), "w").write(text)
            if generate(plain) != 0:
                sys.exit(f"generating the stubs from {proto_root} failed")
        for d in ("cutover", os.path.join("cutover", "v1")):
            open(os.path.join(out, d, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    from cutover.v1 import control_pb2, control_pb2_grpc, spec_pb2

    return control_pb2, control_pb2_grpc, spec_pb2


def split_bundle(path):
    """An operator identity is one PEM file: certificate(s), then the key."""
    text = open(path).read()
    certs, key, block, inside = [], None, [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("-----BEGIN "):
            inside, block = line.strip()[11:-5], [line]
        elif line.startswith("-----END ") and inside:
            block.append(line)
            pem = "".join(block)
            if inside.endswith("PRIVATE KEY"):
                key = pem
            elif inside == "CERTIFICATE":
                certs.append(pem)
            inside = None
        elif inside:
            block.append(line)
    if not certs or key is None:
        sys.exit(f"{path}: expected CERTIFICATE and PRIVATE KEY blocks")
    return "".join(certs).encode(), key.encode()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator", required=True, help="host:port")
    p.add_argument("--ca", required=True, help="the cluster CA certificate")
    p.add_argument("--identity", required=True, help="operator bundle (PEM)")
    p.add_argument("--spec", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--artifact", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--request-id", default=None, help="default: a new UUID")
    p.add_argument(
        "--all-at-once",
        action="store_true",
        help="read the spec into typed fields (ParseSpec), set every host to swap at once in code, submit the typed spec",
    )
    a = p.parse_args()

    pb, rpc, specs = stubs()
    cert, key = split_bundle(a.identity)
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(a.ca, "rb").read(),
        private_key=key,
        certificate_chain=cert,
    )
    channel = grpc.secure_channel(
        a.coordinator, creds, options=[("grpc.ssl_target_name_override", SERVER_NAME)]
    )
    api = rpc.ControlServiceStub(channel)

    me = api.WhoAmI(pb.WhoAmIRequest(), timeout=10)
    print(f"connected as {me.name} ({me.role})")

    spec = pb.SpecRequest(
        spec_toml=open(a.spec).read(),
        file_name=os.path.basename(a.spec),
        version=a.version,
        artifact_url=a.artifact,
        artifact_sha256=a.sha256,
    )
    try:
        check = api.ValidateSpec(spec, timeout=10)
    except grpc.RpcError as e:
        # INVALID_ARGUMENT, with file:line:col of what is wrong.
        print(f"spec refused: {e.details()}", file=sys.stderr)
        return 1
    print(f"spec ok: {check.summary}")

    if a.all_at_once:
        # A spec built in code: the TOML read into typed fields (every
        # default filled in), changed, and sent as typed fields. (With an
        # older protoc the `optional` fields lose their presence: one set to
        # its zero value, `rollback.auto = false` say, would read as unset.)
        parsed = api.ParseSpec(pb.SpecRequest(spec_toml=spec.spec_toml, file_name=spec.file_name), timeout=10)
        typed = parsed.spec
        print(
            f"typed spec: {typed.service}, {specs.Strategy.Name(typed.strategy.kind)},"
            f" healthy_deadline {typed.strategy.healthy_deadline.seconds}s,"
            f" max_unavailable {typed.strategy.max_unavailable.WhichOneof('amount')}"
            f" {getattr(typed.strategy.max_unavailable, typed.strategy.max_unavailable.WhichOneof('amount'))}"
        )
        typed.strategy.max_unavailable.percent = 100
        spec = pb.SpecRequest(
            spec=typed,
            version=a.version,
            artifact_url=a.artifact,
            artifact_sha256=a.sha256,
        )

    # A request id makes the submit safe to retry: a retry after a timeout
    # gets the deployment the first try stored, never a second one.
    rid = a.request_id or str(uuid.uuid4())
    req = pb.SubmitDeploymentRequest(spec=spec, request_id=rid)
    try:
        d = api.SubmitDeployment(req, timeout=30)
    except grpc.RpcError as e:
        print(f"refused: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    again = api.SubmitDeployment(req, timeout=30)
    assert again.id == d.id, (again.id, d.id)
    print(f"deployment {d.id} of {d.service} version {d.version} (request {rid}; a retry got {again.id})")

    # Follow it; a watch cut short is resumed after the last revision seen.
    last = 0
    while True:
        try:
            for info in api.WatchDeployment(
                pb.GetDeploymentRequest(id=d.id, after_revision=last)
            ):
                last = max(last, info.revision)
                # The typed status: enums, hosts, notes (docs/api.md).
                st = info.status
                done = sum(1 for h in st.hosts if h.phase == pb.HOST_PHASE_DONE)
                print(
                    f"revision {info.revision}: {pb.DeploymentPhase.Name(st.phase)}"
                    f" ({done}/{len(st.hosts)} hosts done, {st.batches} batches) {st.blocked_on}".rstrip()
                )
                if info.phase in TERMINAL:
                    print(f"deployment {d.id} {info.phase}")
                    return TERMINAL[info.phase]
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            print(f"watch cut ({e.details()}); resuming after revision {last}")


if __name__ == "__main__":
    sys.exit(main())
