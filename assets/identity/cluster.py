"""Constrained clustering: edges are applied strongest first, and a merge is refused when
it would put two different NHS numbers or UPNs in one person, or join records a
reviewer said are different people. Refusing the merge (rather than merging and then
splitting) keeps every person explainable by the edges that built it.

Pure Python over integer ids: the heavy lifting (blocking, scoring) is in DuckDB, and
what is left is one pass over the accepted edges.
"""

from dataclasses import dataclass, field


@dataclass
class Outcome:
    cluster_of: list[int]
    accepted: list[int] = field(default_factory=list)  # positions of edges that joined two clusters
    refused: list[tuple[int, str]] = field(default_factory=list)  # (edge position, reason)


def constrained_clusters(n_records: int, nhs: dict[int, str], upn: dict[int, set[str]],
                         left: list[int], right: list[int],
                         cannot_link: list[tuple[int, int]] = ()) -> Outcome:
    """Cluster records 0..n_records-1 by applying edges (left[k], right[k]) in the order
    given, which must be strongest first: reviewer matches, shared identifiers, then
    probabilistic links by falling probability.

    nhs / upn: the validated identifiers each record holds (a pupil can hold its UPN
    and former UPN). Two clusters whose identifier sets are both non-empty and share
    nothing are different people.
    """
    parent = list(range(n_records))
    nhs_sets = {i: {v} for i, v in nhs.items()}
    upn_sets = {i: set(v) for i, v in upn.items()}
    forbidden: dict[int, set[int]] = {}
    for a, b in cannot_link:
        forbidden.setdefault(a, set()).add(b)
        forbidden.setdefault(b, set()).add(a)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def conflict(a: int, b: int) -> str | None:
        for label, sets in (("different NHS numbers", nhs_sets), ("different UPNs", upn_sets)):
            sa, sb = sets.get(a), sets.get(b)
            if sa and sb and sa.isdisjoint(sb):
                return label
        fa, fb = forbidden.get(a, ()), forbidden.get(b, ())
        small, other = (fa, b) if len(fa) <= len(fb) else (fb, a)
        if any(find(x) == other for x in small):
            return "a reviewer said these are different people"
        return None

    outcome = Outcome(cluster_of=[])
    for position, (l, r) in enumerate(zip(left, right)):
        a, b = find(l), find(r)
        if a == b:
            continue
        reason = conflict(a, b)
        if reason:
            outcome.refused.append((position, reason))
            continue
        keep, gone = (a, b) if a < b else (b, a)
        parent[gone] = keep
        for sets in (nhs_sets, upn_sets, forbidden):
            if gone in sets:
                sets.setdefault(keep, set()).update(sets.pop(gone))
        outcome.accepted.append(position)
    outcome.cluster_of = [find(i) for i in range(n_records)]
    return outcome
