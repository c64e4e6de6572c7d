"""Objects for the scale benchmarks: HelmReleases and Helm release Secrets as their writers make
them (medic.testing.objects for Flux; Helm's secret driver for storage), N of each."""

from __future__ import annotations

from typing import Any

from medic.testing import objects
from medic.upstream import helm

MANIFEST = (
    "---\n# Source: podinfo/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\n"
)


def release_record(name: str, namespace: str, revision: int = 1) -> dict[str, Any]:
    """A Helm release record as helm's pkg/release.Release serialises it (trimmed manifest)."""
    return {
        "name": name,
        "namespace": namespace,
        "version": revision,
        "info": {
            "first_deployed": "2026-11-01T10:00:00Z",
            "last_deployed": "2026-11-01T10:00:00Z",
            "deleted": "",
            "description": "Install complete",
            "status": helm.ReleaseStatus.DEPLOYED.value,
        },
        "chart": {"metadata": {"name": "podinfo", "version": "6.5.4", "apiVersion": "v2"}},
        "config": {"replicaCount": 2},
        "manifest": MANIFEST * 20,
    }


def release_secret(name: str, namespace: str, revision: int = 1) -> dict[str, Any]:
    """A Secret written by Helm's secret storage driver (pkg/storage/driver/secrets.go)."""
    record = release_record(name, namespace, revision)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": helm.SECRET_TYPE,
        "metadata": {
            "name": helm.secret_name(name, revision),
            "namespace": namespace,
            "labels": {
                helm.LABEL_NAME: name,
                helm.LABEL_OWNER: helm.OWNER,
                helm.LABEL_STATUS: helm.ReleaseStatus.DEPLOYED.value,
                helm.LABEL_VERSION: str(revision),
            },
        },
        "data": {helm.DATA_KEY: helm.encode_secret_data(record)},
    }


def helmrelease(i: int, namespaces: int = 50) -> dict[str, Any]:
    name, namespace = f"app-{i}", f"ns-{i % namespaces}"
    return objects.helmrelease(name, namespace, status=objects.ready_status(name, namespace))


def scale_objects(count: int, namespaces: int = 50) -> list[dict[str, Any]]:
    """`count` ready HelmReleases and their `count` deployed Helm release Secrets."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        out.append(helmrelease(i, namespaces))
        out.append(release_secret(f"app-{i}", f"ns-{i % namespaces}"))
    return out


# podinfo 6.5.4's rendered manifest, trimmed to its three main objects: what a release Secret
# carries besides the chart (medic.testing.helm builds the record around it).
PODINFO_MANIFEST = """---
# Source: podinfo/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels:
    helm.sh/chart: podinfo-6.5.4
    app.kubernetes.io/name: {name}
    app.kubernetes.io/version: "6.5.4"
    app.kubernetes.io/managed-by: Helm
spec:
  type: ClusterIP
  ports:
    - port: 9898
      targetPort: http
      protocol: TCP
      name: http
    - port: 9999
      targetPort: grpc
      protocol: TCP
      name: grpc
  selector:
    app.kubernetes.io/name: {name}
---
# Source: podinfo/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    helm.sh/chart: podinfo-6.5.4
    app.kubernetes.io/name: {name}
    app.kubernetes.io/version: "6.5.4"
    app.kubernetes.io/managed-by: Helm
spec:
  replicas: 2
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9898"
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: podinfo
          image: "ghcr.io/stefanprodan/podinfo:6.5.4"
          imagePullPolicy: IfNotPresent
          command:
            - ./podinfo
            - --port=9898
            - --cert-path=/data/cert
            - --port-metrics=9797
            - --grpc-port=9999
            - --grpc-service-name=podinfo
            - --level=info
            - --random-delay=false
            - --random-error=false
          env:
            - name: PODINFO_UI_COLOR
              value: "#34577c"
          ports:
            - name: http
              containerPort: 9898
              protocol: TCP
            - name: http-metrics
              containerPort: 9797
              protocol: TCP
            - name: grpc
              containerPort: 9999
              protocol: TCP
          livenessProbe:
            exec:
              command: [podcli, check, http, localhost:9898/healthz]
            initialDelaySeconds: 1
            timeoutSeconds: 5
          readinessProbe:
            exec:
              command: [podcli, check, http, localhost:9898/readyz]
            initialDelaySeconds: 1
            timeoutSeconds: 5
          volumeMounts:
            - name: data
              mountPath: /data
          resources:
            limits: null
            requests:
              cpu: 1m
              memory: 16Mi
      volumes:
        - name: data
          emptyDir: {{}}
---
# Source: podinfo/templates/hpa.yaml
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  minReplicas: 2
  maxReplicas: 4
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 99
"""


def real_release_secret(name: str, namespace: str) -> dict[str, Any]:
    """A deployed release Secret with podinfo's rendered manifest (medic.testing.helm)."""
    from medic.testing import helm as helm_records

    return helm_records.release_secret(name, namespace, manifest=PODINFO_MANIFEST.format(name=name))
