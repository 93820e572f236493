"""Where worker pods may run: spot/on-demand node affinity for EKS, Karpenter, GKE and AKS (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from whoiscrawl.operator.spec import DEFAULT_SPOT_LABELS, Scheduling

# Taints some platforms put on spot nodes; workers must tolerate them to land there.
SPOT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
     "effect": "NoSchedule"},
    {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
     "effect": "NoSchedule"},
)
ZONE_KEY = "topology.kubernetes.io/zone"
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
HOSTNAME_KEY = "kubernetes.io/hostname"


def effective_capacity(capacity_type: str) -> str:
    """What the main worker Deployment runs on: 'spot' or 'on-demand'.

    `any` keeps it spot-only (so autoscalers provision spot); pods spot cannot schedule are
    covered by the on-demand overflow Deployment instead (`spot.decide`).
    """
    return "spot" if capacity_type == "any" else capacity_type


def _spot_terms(spot_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"matchExpressions": [{"key": k, "operator": "In", "values": [v]}]}
            for k, v in spot_labels.items()]


def _on_demand_term(spot_labels: Mapping[str, str]) -> dict[str, Any]:
    # NotIn also matches nodes without the label: every non-spot node qualifies.
    return {"matchExpressions": [{"key": k, "operator": "NotIn", "values": [v]}
                                 for k, v in spot_labels.items()]}


def _and_terms(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Terms are ORed, expressions ANDed: (a|b) & (c|d) = ac|ad|bc|bd."""
    if not theirs:
        return ours
    out = []
    for a in ours:
        for b in theirs:
            term = copy.deepcopy(b)
            term["matchExpressions"] = (copy.deepcopy(a["matchExpressions"])
                                        + list(b.get("matchExpressions", [])))
            out.append(term)
    return out


def node_affinity(capacity: str, extra: Mapping[str, Any] | None = None,
                  spot_labels: Mapping[str, str] = DEFAULT_SPOT_LABELS) -> dict[str, Any]:
    """Node affinity for an effective capacity, merged with the user's own nodeAffinity."""
    extra = dict(extra or {})
    user_required = list((extra.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
                         .get("nodeSelectorTerms", []))
    preferred = list(extra.get("preferredDuringSchedulingIgnoredDuringExecution", []))
    if capacity == "spot":
        required = _and_terms(_spot_terms(spot_labels), user_required)
    elif capacity == "on-demand":
        required = _and_terms([_on_demand_term(spot_labels)], user_required)
    else:  # any: spot preferred, anything allowed
        required = user_required
        preferred = [{"weight": 100, "preference": t} for t in _spot_terms(spot_labels)] + preferred
    out: dict[str, Any] = {}
    if required:
        out["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        out["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return out


def tolerations(capacity: str, extra: tuple[Mapping[str, Any], ...] = ()) -> list[dict[str, Any]]:
    """Spot taint tolerations (unless on-demand only), then the user's own."""
    ours = [] if capacity == "on-demand" else [dict(t) for t in SPOT_TOLERATIONS]
    return ours + [dict(t) for t in extra if dict(t) not in ours]


def pod_anti_affinity(selector: Mapping[str, str], one_per_node: bool) -> dict[str, Any]:
    """One worker per node (hard) for egress diversity, or a soft preference to spread nodes."""
    term = {"labelSelector": {"matchLabels": dict(selector)}, "topologyKey": HOSTNAME_KEY}
    if one_per_node:
        return {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    return {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": term}]}


def topology_spread(selector: Mapping[str, str], sched: Scheduling) -> list[dict[str, Any]]:
    """Spread over zones and instance types: spot shortages are per type and zone."""
    keys = [k for k, on in ((ZONE_KEY, sched.spread_zones),
                            (INSTANCE_TYPE_KEY, sched.spread_instance_types)) if on]
    return [{"maxSkew": sched.max_skew, "topologyKey": key,
             "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(selector)},
             "matchLabelKeys": ["pod-template-hash"]} for key in keys]


def affinity(capacity: str, selector: Mapping[str, str], sched: Scheduling) -> dict[str, Any]:
    """The pod's whole `affinity`: node (capacity + user), pod anti-affinity (+ user), podAffinity."""
    user = dict(sched.affinity)
    out: dict[str, Any] = {}
    node = node_affinity(capacity, user.get("nodeAffinity"), sched.spot_labels)
    if node:
        out["nodeAffinity"] = node
    anti = pod_anti_affinity(selector, sched.one_per_node)
    for key, items in dict(user.get("podAntiAffinity") or {}).items():
        anti[key] = list(anti.get(key, [])) + list(items)
    out["podAntiAffinity"] = anti
    if user.get("podAffinity"):
        out["podAffinity"] = copy.deepcopy(user["podAffinity"])
    return out
