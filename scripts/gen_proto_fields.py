"""Generate svcnet/api/data/proto-fields.json: the protobuf field table of the served kinds.

Theory of operation
-------------------
kubectl's typed clients send request bodies as Kubernetes protobuf (svcnet.api.protobuf decodes
them). Decoding needs, for every message reachable from a served kind, each field's number, JSON
name, wire type and shape, plus whether the Go field is a pointer: gogo-protobuf writes every
non-pointer scalar (zero or not), and Go's JSON `omitempty` then drops the zero ones, while a
pointer keeps its explicit zero (`replicas: 0`, `allocateLoadBalancerNodePorts: false`,
`emptyDir: {}`).

Those facts live in the Go struct tags of k8s.io/api and k8s.io/apimachinery (`types.go`):
`Replicas *int32 `json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas"``. SPEC below
is a transcription of those tags, one Go struct per line, read from these sources:

  kubernetes/api core/v1/types.go (commit 3fed8b5a, 1.36 development), apps/v1/types.go,
  discovery/v1/types.go, autoscaling/v1/types.go; kubernetes/kubernetes
  staging/src/k8s.io/api/coordination/v1/types.go; kubernetes/apimachinery
  pkg/apis/meta/v1/types.go.

A SPEC line is `GoStruct field...`, each field `jsonName=number` followed by `*` when the Go
field is a pointer and by `^GoStruct` when the struct is embedded inline (`json:",inline"`: a
nested message on the wire, flattened into the parent in JSON, e.g. Volume.volumeSource).
Continuation lines start with blanks; `[core.v1]`-style headers name the API package. The
wire-type word of a tag is not transcribed: go-to-protobuf ignores it and types the field from
its Go type (`DefaultMode *int32 ... protobuf:"bytes,3,..."` is a varint on the wire).

Everything else is taken from data/openapi-schemas.json (the served OpenAPI, from
scripts/gen_openapi.py), so that the transcription cannot drift from the JSON the server speaks:
a field's type (string, bool, int32, int64, bytes, a message, Time, MicroTime, Quantity,
IntOrString, FieldsV1) and shape (list, map) come from the definition's property of that JSON
name. An inline struct that has no definition of its own (VolumeSource, ProbeHandler,
EphemeralContainerCommon) takes its properties from the definition that inlines it. The script
reports, and leaves out, transcribed fields the schema does not serve, and lists schema
properties the transcription lacks (fields newer than the sources above); both lists should
stay short and are printed on every run.

Output: {"kinds": {apiVersion: {kind: message}}, "messages": {message: {number: field}}}, one
message per line, where a field is [jsonName, type] plus a third element "ptr", "list", "map"
or "inline" when it is not a plain singular field. Messages are named after their OpenAPI
definition without the `io.k8s.api.`/`io.k8s.apimachinery.pkg.apis.` prefix
(`core.v1.ServicePort`). Run from the repository root:

    .venv/bin/python scripts/gen_proto_fields.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "svcnet" / "api" / "data" / "openapi-schemas.json"
OUT = ROOT / "svcnet" / "api" / "data" / "proto-fields.json"

# The kinds a request body may carry: apiVersion -> kind -> message. "*" matches any apiVersion
# (DeleteOptions is registered in every group version).
KINDS = {
    "v1": {k: "core.v1." + k for k in
           ("Namespace", "Pod", "Service", "Endpoints", "Node", "Event", "ConfigMap")},
    "apps/v1": {"Deployment": "apps.v1.Deployment", "ReplicaSet": "apps.v1.ReplicaSet"},
    "discovery.k8s.io/v1": {"EndpointSlice": "discovery.v1.EndpointSlice"},
    "coordination.k8s.io/v1": {"Lease": "coordination.v1.Lease"},
    "autoscaling/v1": {"Scale": "autoscaling.v1.Scale"},
    "*": {"DeleteOptions": "meta.v1.DeleteOptions"},
}

DEFINITION_PREFIX = {"meta.v1": "io.k8s.apimachinery.pkg.apis.meta.v1."}
# Definitions with a wire form of their own, decoded as scalars.
SPECIAL = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
}

SPEC = """
[core.v1]
AWSElasticBlockStoreVolumeSource volumeID=1 fsType=2 partition=3 readOnly=4
Affinity nodeAffinity=1* podAffinity=2* podAntiAffinity=3*
AppArmorProfile type=1 localhostProfile=2*
AttachedVolume name=1 devicePath=2
AzureDiskVolumeSource diskName=1 diskURI=2 cachingMode=3* fsType=4* readOnly=5* kind=6*
AzureFileVolumeSource secretName=1 shareName=2 readOnly=3
CSIVolumeSource driver=1 readOnly=2* fsType=3* volumeAttributes=4 nodePublishSecretRef=5*
Capabilities add=1 drop=2
CephFSVolumeSource monitors=1 path=2 user=3 secretFile=4 secretRef=5* readOnly=6
CinderVolumeSource volumeID=1 fsType=2 readOnly=3 secretRef=4*
ClientIPConfig timeoutSeconds=1*
ClusterTrustBundleProjection name=1* signerName=2* labelSelector=3* optional=5* path=4
ConfigMap metadata=1 immutable=4* data=2 binaryData=3
ConfigMapEnvSource localObjectReference=1^LocalObjectReference optional=2*
ConfigMapKeySelector localObjectReference=1^LocalObjectReference key=2 optional=3*
ConfigMapNodeConfigSource namespace=1 name=2 uid=3 resourceVersion=4 kubeletConfigKey=5
ConfigMapProjection localObjectReference=1^LocalObjectReference items=2 optional=4*
ConfigMapVolumeSource localObjectReference=1^LocalObjectReference items=2 defaultMode=3*
    optional=4*
Container name=1 image=2 command=3 args=4 workingDir=5 ports=6 envFrom=19 env=7 resources=8
    resizePolicy=23 restartPolicy=24* restartPolicyRules=25 volumeMounts=9 volumeDevices=21
    livenessProbe=10* readinessProbe=11* startupProbe=22* lifecycle=12*
    terminationMessagePath=13 terminationMessagePolicy=20 imagePullPolicy=14 securityContext=15*
    stdin=16 stdinOnce=17 tty=18
ContainerExtendedResourceRequest containerName=1 resourceName=2 requestName=3
ContainerImage names=1 sizeBytes=2
ContainerPort name=1 hostPort=2 containerPort=3 protocol=4 hostIP=5
ContainerResizePolicy resourceName=1 restartPolicy=2
ContainerRestartRule action=1 exitCodes=2*
ContainerRestartRuleOnExitCodes operator=1 values=2
ContainerState waiting=1* running=2* terminated=3*
ContainerStateRunning startedAt=1
ContainerStateTerminated exitCode=1 signal=2 reason=3 message=4 startedAt=5 finishedAt=6
    containerID=7
ContainerStateWaiting reason=1 message=2
ContainerStatus name=1 state=2 lastState=3 ready=4 restartCount=5 image=6 imageID=7
    containerID=8 started=9* allocatedResources=10 resources=11* volumeMounts=12 user=13*
    allocatedResourcesStatus=14 stopSignal=15*
ContainerUser linux=1*
DaemonEndpoint Port=1
DownwardAPIProjection items=1
DownwardAPIVolumeFile path=1 fieldRef=2* resourceFieldRef=3* mode=4*
DownwardAPIVolumeSource items=1 defaultMode=2*
EmptyDirVolumeSource medium=1 sizeLimit=2*
EndpointAddress ip=1 hostname=3 nodeName=4* targetRef=2*
EndpointPort name=1 port=2 protocol=3 appProtocol=4*
EndpointSubset addresses=1 notReadyAddresses=2 ports=3
Endpoints metadata=1 subsets=2
EnvFromSource prefix=1 configMapRef=2* secretRef=3*
EnvVar name=1 value=2 valueFrom=3*
EnvVarSource fieldRef=1* resourceFieldRef=2* configMapKeyRef=3* secretKeyRef=4* fileKeyRef=5*
EphemeralContainer ephemeralContainerCommon=1^EphemeralContainerCommon targetContainerName=2
EphemeralContainerCommon name=1 image=2 command=3 args=4 workingDir=5 ports=6 envFrom=19 env=7
    resources=8 resizePolicy=23 restartPolicy=24* restartPolicyRules=25 volumeMounts=9
    volumeDevices=21 livenessProbe=10* readinessProbe=11* startupProbe=22* lifecycle=12*
    terminationMessagePath=13 terminationMessagePolicy=20 imagePullPolicy=14 securityContext=15*
    stdin=16 stdinOnce=17 tty=18
EphemeralVolumeSource volumeClaimTemplate=1*
Event metadata=1 involvedObject=2 reason=3 message=4 source=5 firstTimestamp=6 lastTimestamp=7
    count=8 type=9 eventTime=10 series=11* action=12 related=13* reportingComponent=14
    reportingInstance=15
EventSeries count=1 lastObservedTime=2
EventSource component=1 host=2
ExecAction command=1
FCVolumeSource targetWWNs=1 lun=2* fsType=3 readOnly=4 wwids=5
FileKeySelector volumeName=1 path=2 key=3 optional=4*
FlexVolumeSource driver=1 fsType=2 secretRef=3* readOnly=4 options=5
FlockerVolumeSource datasetName=1 datasetUUID=2
GCEPersistentDiskVolumeSource pdName=1 fsType=2 partition=3 readOnly=4
GRPCAction port=1 service=2*
GitRepoVolumeSource repository=1 revision=2 directory=3
GlusterfsVolumeSource endpoints=1 path=2 readOnly=3
HTTPGetAction path=1 port=2 host=3 scheme=4 httpHeaders=5
HTTPHeader name=1 value=2
HostAlias ip=1 hostnames=2
HostIP ip=1
HostPathVolumeSource path=1 type=2*
ISCSIVolumeSource targetPortal=1 iqn=2 lun=3 iscsiInterface=4 fsType=5 readOnly=6 portals=7
    chapAuthDiscovery=8 chapAuthSession=11 secretRef=10* initiatorName=12*
ImageVolumeSource reference=1 pullPolicy=2
ImageVolumeStatus imageRef=1
KeyToPath key=1 path=2 mode=3*
Lifecycle postStart=1* preStop=2* stopSignal=3*
LifecycleHandler exec=1* httpGet=2* tcpSocket=3* sleep=4*
LinuxContainerUser uid=1 gid=2 supplementalGroups=3
LoadBalancerIngress ip=1 hostname=2 ipMode=3* ports=4
LoadBalancerStatus ingress=1
LocalObjectReference name=1
NFSVolumeSource server=1 path=2 readOnly=3
Namespace metadata=1 spec=2 status=3
NamespaceCondition type=1 status=2 lastTransitionTime=4 reason=5 message=6
NamespaceSpec finalizers=1
NamespaceStatus phase=1 conditions=2
Node metadata=1 spec=2 status=3
NodeAddress type=1 address=2
NodeAffinity requiredDuringSchedulingIgnoredDuringExecution=1*
    preferredDuringSchedulingIgnoredDuringExecution=2
NodeCondition type=1 status=2 lastHeartbeatTime=3 lastTransitionTime=4 reason=5 message=6
NodeConfigSource configMap=2*
NodeConfigStatus assigned=1* active=2* lastKnownGood=3* error=4
NodeDaemonEndpoints kubeletEndpoint=1
NodeFeatures supplementalGroupsPolicy=1*
NodeRuntimeHandler name=1 features=2*
NodeRuntimeHandlerFeatures recursiveReadOnlyMounts=1* userNamespaces=2*
NodeSelector nodeSelectorTerms=1
NodeSelectorRequirement key=1 operator=2 values=3
NodeSelectorTerm matchExpressions=1 matchFields=2
NodeSpec podCIDR=1 podCIDRs=7 providerID=3 unschedulable=4 taints=5 configSource=6* externalID=2
NodeStatus capacity=1 allocatable=2 phase=3 conditions=4 addresses=5 daemonEndpoints=6
    nodeInfo=7 images=8 volumesInUse=9 volumesAttached=10 config=11* runtimeHandlers=12
    features=13* declaredFeatures=14
NodeSwapStatus capacity=1*
NodeSystemInfo machineID=1 systemUUID=2 bootID=3 kernelVersion=4 osImage=5
    containerRuntimeVersion=6 kubeletVersion=7 kubeProxyVersion=8 operatingSystem=9
    architecture=10 swap=11*
ObjectFieldSelector apiVersion=1 fieldPath=2
ObjectReference kind=1 namespace=2 name=3 uid=4 apiVersion=5 resourceVersion=6 fieldPath=7
PersistentVolumeClaimSpec accessModes=1 selector=4* resources=2 volumeName=3 storageClassName=5*
    volumeMode=6* dataSource=7* dataSourceRef=8* volumeAttributesClassName=9*
PersistentVolumeClaimTemplate metadata=1 spec=2
PersistentVolumeClaimVolumeSource claimName=1 readOnly=2
PhotonPersistentDiskVolumeSource pdID=1 fsType=2
Pod metadata=1 spec=2 status=3
PodAffinity requiredDuringSchedulingIgnoredDuringExecution=1
    preferredDuringSchedulingIgnoredDuringExecution=2
PodAffinityTerm labelSelector=1* namespaces=2 topologyKey=3 namespaceSelector=4*
    matchLabelKeys=5 mismatchLabelKeys=6
PodAntiAffinity requiredDuringSchedulingIgnoredDuringExecution=1
    preferredDuringSchedulingIgnoredDuringExecution=2
PodCertificateProjection signerName=1 keyType=2 maxExpirationSeconds=3* credentialBundlePath=4
    keyPath=5 certificateChainPath=6 userAnnotations=7
PodCondition type=1 observedGeneration=7 status=2 lastProbeTime=3 lastTransitionTime=4 reason=5
    message=6
PodDNSConfig nameservers=1 searches=2 options=3
PodDNSConfigOption name=1 value=2*
PodExtendedResourceClaimStatus requestMappings=1 resourceClaimName=2
PodIP ip=1
PodOS name=1
PodReadinessGate conditionType=1
PodResourceClaim name=1 resourceClaimName=3* resourceClaimTemplateName=4*
PodResourceClaimStatus name=1 resourceClaimName=2*
PodSchedulingGate name=1
PodSecurityContext seLinuxOptions=1* windowsOptions=8* runAsUser=2* runAsGroup=6*
    runAsNonRoot=3* supplementalGroups=4 supplementalGroupsPolicy=12* fsGroup=5* sysctls=7
    fsGroupChangePolicy=9* seccompProfile=10* appArmorProfile=11* seLinuxChangePolicy=13*
PodSpec volumes=1 initContainers=20 containers=2 ephemeralContainers=34 restartPolicy=3
    terminationGracePeriodSeconds=4* activeDeadlineSeconds=5* dnsPolicy=6 nodeSelector=7
    serviceAccountName=8 serviceAccount=9 automountServiceAccountToken=21* nodeName=10
    hostNetwork=11 hostPID=12 hostIPC=13 shareProcessNamespace=27* securityContext=14*
    imagePullSecrets=15 hostname=16 subdomain=17 affinity=18* schedulerName=19 tolerations=22
    hostAliases=23 priorityClassName=24 priority=25* dnsConfig=26* readinessGates=28
    runtimeClassName=29* enableServiceLinks=30* preemptionPolicy=31* overhead=32
    topologySpreadConstraints=33 setHostnameAsFQDN=35* os=36* hostUsers=37* schedulingGates=38
    resourceClaims=39 resources=40* hostnameOverride=41*
PodStatus observedGeneration=17 phase=1 conditions=2 message=3 reason=4 nominatedNodeName=11
    hostIP=5 hostIPs=16 podIP=6 podIPs=12 startTime=7* initContainerStatuses=10
    containerStatuses=8 qosClass=9 ephemeralContainerStatuses=13 resize=14
    resourceClaimStatuses=15 extendedResourceClaimStatus=18* allocatedResources=19 resources=20*
PodTemplateSpec metadata=1 spec=2
PortStatus port=1 protocol=2 error=3*
PortworxVolumeSource volumeID=1 fsType=2 readOnly=3
PreferredSchedulingTerm weight=1 preference=2
Probe handler=1^ProbeHandler initialDelaySeconds=2 timeoutSeconds=3 periodSeconds=4
    successThreshold=5 failureThreshold=6 terminationGracePeriodSeconds=7*
ProbeHandler exec=1* httpGet=2* tcpSocket=3* grpc=4*
ProjectedVolumeSource sources=1 defaultMode=2*
QuobyteVolumeSource registry=1 volume=2 readOnly=3 user=4 group=5 tenant=6
RBDVolumeSource monitors=1 image=2 fsType=3 pool=4 user=5 keyring=6 secretRef=7* readOnly=8
ResourceClaim name=1 request=2
ResourceFieldSelector containerName=1 resource=2 divisor=3
ResourceHealth resourceID=1 health=2
ResourceRequirements limits=1 requests=2 claims=3
ResourceStatus name=1 resources=2
SELinuxOptions user=1 role=2 type=3 level=4
ScaleIOVolumeSource gateway=1 system=2 secretRef=3* sslEnabled=4 protectionDomain=5
    storagePool=6 storageMode=7 volumeName=8 fsType=9 readOnly=10
SeccompProfile type=1 localhostProfile=2*
SecretEnvSource localObjectReference=1^LocalObjectReference optional=2*
SecretKeySelector localObjectReference=1^LocalObjectReference key=2 optional=3*
SecretProjection localObjectReference=1^LocalObjectReference items=2 optional=4*
SecretVolumeSource secretName=1 items=2 defaultMode=3* optional=4*
SecurityContext capabilities=1* privileged=2* seLinuxOptions=3* windowsOptions=10* runAsUser=4*
    runAsGroup=8* runAsNonRoot=5* readOnlyRootFilesystem=6* allowPrivilegeEscalation=7*
    procMount=9* seccompProfile=11* appArmorProfile=12*
Service metadata=1 spec=2 status=3
ServiceAccountTokenProjection audience=1 expirationSeconds=2* path=3
ServicePort name=1 protocol=2 appProtocol=6* port=3 targetPort=4 nodePort=5
ServiceSpec ports=1 selector=2 clusterIP=3 clusterIPs=18 type=4 externalIPs=5 sessionAffinity=7
    loadBalancerIP=8 loadBalancerSourceRanges=9 externalName=10 externalTrafficPolicy=11
    healthCheckNodePort=12 publishNotReadyAddresses=13 sessionAffinityConfig=14* ipFamilies=19
    ipFamilyPolicy=17* allocateLoadBalancerNodePorts=20* loadBalancerClass=21*
    internalTrafficPolicy=22* trafficDistribution=23*
ServiceStatus loadBalancer=1 conditions=2
SessionAffinityConfig clientIP=1*
SleepAction seconds=1
StorageOSVolumeSource volumeName=1 volumeNamespace=2 fsType=3 readOnly=4 secretRef=5*
Sysctl name=1 value=2
TCPSocketAction port=1 host=2
Taint key=1 value=2 effect=3 timeAdded=4*
Toleration key=1 operator=2 value=3 effect=4 tolerationSeconds=5*
TopologySpreadConstraint maxSkew=1 topologyKey=2 whenUnsatisfiable=3 labelSelector=4*
    minDomains=5* nodeAffinityPolicy=6* nodeTaintsPolicy=7* matchLabelKeys=8
TypedLocalObjectReference apiGroup=1* kind=2 name=3
TypedObjectReference apiGroup=1* kind=2 name=3 namespace=4*
Volume name=1 volumeSource=2^VolumeSource
VolumeDevice name=1 devicePath=2
VolumeMount name=1 readOnly=2 recursiveReadOnly=7* mountPath=3 subPath=4 mountPropagation=5*
    subPathExpr=6
VolumeMountStatus name=1 mountPath=2 readOnly=3 recursiveReadOnly=4* volumeStatus=5
VolumeProjection secret=1* downwardAPI=2* configMap=3* serviceAccountToken=4*
    clusterTrustBundle=5* podCertificate=6*
VolumeResourceRequirements limits=1 requests=2
VolumeSource hostPath=1* emptyDir=2* gcePersistentDisk=3* awsElasticBlockStore=4* gitRepo=5*
    secret=6* nfs=7* iscsi=8* glusterfs=9* persistentVolumeClaim=10* rbd=11* flexVolume=12*
    cinder=13* cephfs=14* flocker=15* downwardAPI=16* fc=17* azureFile=18* configMap=19*
    vsphereVolume=20* quobyte=21* azureDisk=22* photonPersistentDisk=23* projected=26*
    portworxVolume=24* scaleIO=25* storageos=27* csi=28* ephemeral=29* image=30*
VolumeStatus image=1*
VsphereVirtualDiskVolumeSource volumePath=1 fsType=2 storagePolicyName=3 storagePolicyID=4
WeightedPodAffinityTerm weight=1 podAffinityTerm=2
WindowsSecurityContextOptions gmsaCredentialSpecName=1* gmsaCredentialSpec=2* runAsUserName=3*
    hostProcess=4*

[meta.v1]
Condition type=1 status=2 observedGeneration=3 lastTransitionTime=4 reason=5 message=6
DeleteOptions gracePeriodSeconds=1* preconditions=2* orphanDependents=3* propagationPolicy=4*
    dryRun=5 ignoreStoreReadErrorWithClusterBreakingPotential=6*
LabelSelector matchLabels=1 matchExpressions=2
LabelSelectorRequirement key=1 operator=2 values=3
ManagedFieldsEntry manager=1 operation=2 apiVersion=3 time=4* fieldsType=6 fieldsV1=7*
    subresource=8
ObjectMeta name=1 generateName=2 namespace=3 selfLink=4 uid=5 resourceVersion=6 generation=7
    creationTimestamp=8 deletionTimestamp=9* deletionGracePeriodSeconds=10* labels=11
    annotations=12 ownerReferences=13 finalizers=14 managedFields=17
OwnerReference apiVersion=5 kind=1 name=3 uid=4 controller=6* blockOwnerDeletion=7*
Preconditions uid=1* resourceVersion=2*

[apps.v1]
Deployment metadata=1 spec=2 status=3
DeploymentCondition type=1 status=2 lastUpdateTime=6 lastTransitionTime=7 reason=4 message=5
DeploymentSpec replicas=1* selector=2* template=3 strategy=4 minReadySeconds=5
    revisionHistoryLimit=6* paused=7 progressDeadlineSeconds=9*
DeploymentStatus observedGeneration=1 replicas=2 updatedReplicas=3 readyReplicas=7
    availableReplicas=4 unavailableReplicas=5 terminatingReplicas=9* conditions=6
    collisionCount=8*
DeploymentStrategy type=1 rollingUpdate=2*
ReplicaSet metadata=1 spec=2 status=3
ReplicaSetCondition type=1 status=2 lastTransitionTime=3 reason=4 message=5
ReplicaSetSpec replicas=1* minReadySeconds=4 selector=2* template=3
ReplicaSetStatus replicas=1 fullyLabeledReplicas=2 readyReplicas=4 availableReplicas=5
    terminatingReplicas=7* observedGeneration=3 conditions=6
RollingUpdateDeployment maxUnavailable=1* maxSurge=2*

[discovery.v1]
Endpoint addresses=1 conditions=2 hostname=3* targetRef=4* deprecatedTopology=5 nodeName=6*
    zone=7* hints=8*
EndpointConditions ready=1* serving=2* terminating=3*
EndpointHints forZones=1 forNodes=2
EndpointPort name=1* protocol=2* port=3* appProtocol=4*
EndpointSlice metadata=1 addressType=4 endpoints=2 ports=3
ForNode name=1
ForZone name=1

[coordination.v1]
Lease metadata=1 spec=2
LeaseSpec holderIdentity=1* leaseDurationSeconds=2* acquireTime=3* renewTime=4*
    leaseTransitions=5* strategy=6* preferredHolder=7*

[autoscaling.v1]
Scale metadata=1 spec=2 status=3
ScaleSpec replicas=1
ScaleStatus replicas=1 selector=2
"""


def parse_spec(text: str) -> dict[str, list[tuple[str, int, bool, str | None]]]:
    """SPEC -> {"core.v1.Volume": [(json, number, pointer, inline struct or None), ...]}."""
    structs: dict[str, list] = {}
    package = ""
    for line in re.sub(r"\n[ \t]+", " ", text).splitlines():
        if not line.strip():
            continue
        if line.startswith("["):
            package = line.strip("[]")
            continue
        name, *fields = line.split()
        parsed = []
        for f in fields:
            m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(\d+)(\*?)(?:\^(\w+))?", f)
            if not m:
                sys.exit(f"bad SPEC field {f!r} in {name}")
            inline = f"{package}.{m[4]}" if m[4] else None
            parsed.append((m[1], int(m[2]), m[3] == "*", inline))
        for i in (0, 1):
            seen = [f[i] for f in parsed]
            if len(set(seen)) != len(seen):
                sys.exit(f"{name}: a field name or number appears twice")
        structs[f"{package}.{name}"] = parsed
    return structs


def definition_name(message: str) -> str:
    package, _, name = message.rpartition(".")
    return DEFINITION_PREFIX.get(package, f"io.k8s.api.{package}.") + name


def short_name(definition: str) -> str:
    return SPECIAL.get(definition) or re.sub(r"^io\.k8s\.(api|apimachinery\.pkg\.apis)\.", "",
                                             definition)


def property_type(prop: dict) -> tuple[str, str]:
    """(type, shape) of an OpenAPI property: shape is "", "list" or "map"."""
    ref = prop.get("$ref") or prop.get("allOf", [{}])[0].get("$ref")
    if ref:
        return short_name(ref.rsplit("/", 1)[1]), ""
    kind, fmt = prop.get("type"), prop.get("format")
    if kind == "array":
        return property_type(prop["items"])[0], "list"
    if kind == "object" and "additionalProperties" in prop:
        return property_type(prop["additionalProperties"])[0], "map"
    scalar = {("string", None): "string", ("string", "byte"): "bytes", ("boolean", None): "bool",
              ("integer", "int32"): "int32", ("integer", "int64"): "int64"}.get((kind, fmt))
    if scalar is None:
        sys.exit(f"no wire type for OpenAPI property {prop}")
    return scalar, ""


def build(structs: dict, schemas: dict) -> tuple[dict, list[str]]:
    """The message table reachable from KINDS, and the report lines."""
    messages: dict[str, dict] = {}
    report: list[str] = []
    pending = [(m, None) for kinds in KINDS.values() for m in kinds.values()]
    while pending:
        message, host = pending.pop()
        if message in messages:
            continue
        if message not in structs:
            sys.exit(f"{message} is reachable but not transcribed in SPEC")
        definition = schemas.get(definition_name(message)) or schemas[definition_name(host)]
        props = definition.get("properties", {})
        fields: dict[str, list] = {}
        for json_name, number, pointer, inline in structs[message]:
            if inline:
                fields[str(number)] = [json_name, inline, "inline"]
                pending.append((inline, message))
                continue
            if json_name not in props:
                report.append(f"not served, left out: {message}.{json_name}")
                continue
            kind, shape = property_type(props[json_name])
            if shape and pointer:
                sys.exit(f"{message}.{json_name}: a {shape} cannot be a pointer")
            fields[str(number)] = [json_name, kind] + ([shape or "ptr"] if shape or pointer else [])
            if "." in kind:
                pending.append((kind, message))
        messages[message] = fields
    for message, fields in messages.items():
        if definition_name(message) not in schemas:
            continue
        covered = {f[0] for f in fields.values()} | {"apiVersion", "kind"}
        for f in fields.values():
            if f[2:] == ["inline"]:
                covered |= {g[0] for g in messages[f[1]].values()}
        missing = sorted(set(schemas[definition_name(message)].get("properties", {})) - covered)
        if missing:
            report.append(f"served but not in the transcribed source: {message}: {missing}")
    for name in sorted(set(structs) - set(messages)):
        report.append(f"transcribed but unreachable: {name}")
    return messages, report


def render(messages: dict) -> str:
    lines = ['{"kinds":' + json.dumps(KINDS, separators=(",", ":"), sort_keys=True) + ',',
             '"messages":{']
    names = sorted(messages)
    for i, name in enumerate(names):
        fields = dict(sorted(messages[name].items(), key=lambda kv: int(kv[0])))
        sep = "," if i < len(names) - 1 else ""
        lines.append(json.dumps(name) + ":" + json.dumps(fields, separators=(",", ":")) + sep)
    return "\n".join(lines) + "\n}}\n"


def main() -> None:
    messages, report = build(parse_spec(SPEC), json.loads(SCHEMAS.read_text(encoding="utf-8")))
    for line in report:
        print(line)
    OUT.write_text(render(messages), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(messages)} messages, "
          f"{sum(len(f) for f in messages.values())} fields")


if __name__ == "__main__":
    main()
