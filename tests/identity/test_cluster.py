"""Constrained clustering (assets/identity/cluster.py): edges applied strongest first,
and no merge that would give one person two NHS numbers or two unrelated UPNs, or join
records a reviewer said are different people."""

from __future__ import annotations

from assets.identity.cluster import constrained_clusters

NHS_A, NHS_B = "9990000018", "9990000026"


def clusters(n, edges, nhs=None, upn=None, cannot=()):
    return constrained_clusters(n, nhs or {}, upn or {}, [l for l, _ in edges], [r for _, r in edges], list(cannot))


def same(outcome, *records) -> bool:
    return len({outcome.cluster_of[r] for r in records}) == 1


def test_edges_join_records_transitively_and_a_record_without_edges_stays_alone():
    out = clusters(5, [(0, 1), (1, 2), (3, 3)])
    assert same(out, 0, 1, 2)
    assert not same(out, 0, 3) and not same(out, 3, 4)
    assert out.cluster_of[3] == 3 and out.cluster_of[4] == 4
    assert out.accepted == [0, 1] and out.refused == []
    # the cluster id is one of the cluster's own records
    assert out.cluster_of[0] in (0, 1, 2)


def test_an_edge_inside_a_cluster_is_neither_accepted_nor_refused():
    out = clusters(3, [(0, 1), (1, 2), (0, 2)])
    assert same(out, 0, 1, 2)
    assert out.accepted == [0, 1] and out.refused == []


def test_a_merge_joining_two_different_nhs_numbers_is_refused():
    out = clusters(2, [(0, 1)], nhs={0: NHS_A, 1: NHS_B})
    assert not same(out, 0, 1)
    assert out.accepted == [] and out.refused == [(0, "different NHS numbers")]


def test_records_with_the_same_nhs_number_or_one_without_merge():
    out = clusters(3, [(0, 1), (1, 2)], nhs={0: NHS_A, 1: NHS_A})
    assert same(out, 0, 1, 2) and out.refused == []


def test_a_chain_cannot_carry_two_nhs_numbers_into_one_person():
    # A (NHS_A) - B (no number) - C (NHS_B): B joins whichever comes first, the other is refused
    out = clusters(3, [(0, 1), (1, 2)], nhs={0: NHS_A, 2: NHS_B})
    assert same(out, 0, 1) and not same(out, 1, 2)
    assert out.accepted == [0] and out.refused == [(1, "different NHS numbers")]


def test_edges_are_applied_in_the_order_given():
    # the same chain with the B-C edge first: now B goes with C and A stays alone
    out = clusters(3, [(1, 2), (0, 1)], nhs={0: NHS_A, 2: NHS_B})
    assert same(out, 1, 2) and not same(out, 0, 1)
    assert out.accepted == [0] and out.refused == [(1, "different NHS numbers")]


def test_the_constraint_holds_between_two_grown_clusters():
    # {0, 1} holds NHS_A, {2, 3} holds NHS_B; an edge between their number-less members is refused
    out = clusters(4, [(0, 1), (2, 3), (1, 3)], nhs={0: NHS_A, 2: NHS_B})
    assert same(out, 0, 1) and same(out, 2, 3) and not same(out, 0, 2)
    assert out.refused == [(2, "different NHS numbers")]


def test_a_pupil_with_a_former_upn_merges_with_a_record_holding_that_former_upn():
    pupil = {"N820200125001", "A820200118007"}  # current UPN and former UPN
    out = clusters(3, [(0, 1), (0, 2)], upn={0: pupil, 1: {"A820200118007"}, 2: {"B999999999999"}})
    assert same(out, 0, 1)
    assert not same(out, 0, 2)
    assert out.accepted == [0] and out.refused == [(1, "different UPNs")]


def test_upn_sets_grow_with_the_cluster():
    # 1 holds only the former UPN; once it has joined the pupil the cluster holds both
    out = clusters(3, [(0, 1), (1, 2)], upn={0: {"N1", "A1"}, 1: {"A1"}, 2: {"N1"}})
    assert same(out, 0, 1, 2) and out.refused == []


def test_a_reviewers_cannot_link_pair_stays_apart():
    out = clusters(2, [(0, 1)], cannot=[(0, 1)])
    assert not same(out, 0, 1)
    assert out.refused == [(0, "a reviewer said these are different people")]


def test_a_reviewers_cannot_link_pair_stays_apart_even_through_a_third_record():
    # 0 and 2 are different people; 1 links to both, but can only join one of them
    out = clusters(3, [(0, 1), (1, 2)], cannot=[(0, 2)])
    assert same(out, 0, 1) and not same(out, 0, 2) and not same(out, 1, 2)
    assert out.refused == [(1, "a reviewer said these are different people")]
    # the constraint also holds when both sides have grown before they meet
    out = clusters(5, [(0, 1), (2, 3), (3, 4), (1, 4)], cannot=[(2, 0)])
    assert same(out, 0, 1) and same(out, 2, 3, 4) and not same(out, 0, 4)
    assert out.refused == [(3, "a reviewer said these are different people")]


def test_a_cannot_link_pair_does_not_hold_apart_unrelated_records():
    out = clusters(4, [(1, 2), (2, 3)], cannot=[(0, 3)])
    assert same(out, 1, 2, 3) and out.refused == []
