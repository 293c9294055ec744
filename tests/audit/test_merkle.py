"""RFC 6962 hashing, proofs and their verification: every public vector, then properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle
from audit.errors import VerificationError
from audit.proof import ProofTree, TlogProof, format_proof
from tests.audit.vectors import b64, ids, json_files, vector

INCLUSION = json_files("merkle/inclusion")
CONSISTENCY = json_files("merkle/consistency")


def test_vector_counts() -> None:
    assert len(INCLUSION) == 98
    assert len(CONSISTENCY) == 98


@pytest.mark.parametrize("path", INCLUSION, ids=ids(INCLUSION))
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [b64(h) for h in v["proof"] or []]
    args = (v["leafIdx"], v["treeSize"], b64(v["leafHash"]), proof, b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=ids(CONSISTENCY))
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [b64(h) for h in v["proof"] or []]
    args = (v["size1"], v["size2"], b64(v["root1"]), b64(v["root2"]), proof)
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_happy_paths_named_in_readme() -> None:
    v = vector("merkle/inclusion/1/happy-path.json")
    assert (v["leafIdx"], v["treeSize"], len(v["proof"])) == (0, 8, 3)
    v = vector("merkle/inclusion/3/happy-path.json")
    assert (v["leafIdx"], v["treeSize"], len(v["proof"])) == (2, 3, 1)
    assert vector("merkle/inclusion/0/happy-path.json")["proof"] is None


TREE = vector("rfc6962/tree-8-leaves.json")
LEAVES = [bytes.fromhex(h) for h in TREE["leaf_inputs_hex"]]


def test_rfc6962_tree_hashes_roots_and_stored_nodes() -> None:
    tree = merkle.MerkleTree()
    for k, data in enumerate(LEAVES):
        assert tree.append(data) == k
        assert merkle.leaf_hash(data).hex() == TREE["leaf_hashes_hex"][k]
    for size, want in TREE["roots_hex_by_size"].items():
        assert tree.root(int(size)).hex() == want
        assert b64(TREE["roots_b64_by_size"][size]).hex() == want
        assert merkle.root_of(merkle.leaf_hash(d) for d in LEAVES[: int(size)]).hex() == want
    for level, row in enumerate(TREE["node_hashes_hex_by_level"]["levels"]):
        got = tree.hashes([(level, i) for i in range(len(row))])
        assert [got[(level, i)].hex() for i in range(len(row))] == row


def test_hasher_vectors() -> None:
    by = {h["desc"]: h for h in TREE["hasher_vectors"]}
    assert merkle.EMPTY_ROOT.hex() == by["empty tree root = SHA-256 of the empty string"]["hash_hex"]
    for h in TREE["hasher_vectors"]:
        if "leaf_input_hex" in h:
            assert merkle.leaf_hash(bytes.fromhex(h["leaf_input_hex"])).hex() == h["hash_hex"]
        elif "leaf_input_ascii" in h:
            got = merkle.leaf_hash(h["leaf_input_ascii"].encode())
            assert got == (bytes.fromhex(h["hash_hex"]) if "hash_hex" in h else b64(h["hash_b64"]))
        elif "left_ascii" in h:
            assert merkle.node_hash(h["left_ascii"].encode(), h["right_ascii"].encode()).hex() == h["hash_hex"]


def test_generated_proofs_equal_the_vectors() -> None:
    tree = merkle.MerkleTree()
    for data in LEAVES:
        tree.append(data)
    for path in INCLUSION:
        v = json.loads(path.read_text())
        if not v["wantErr"] and v["treeSize"] <= 8 and "single-entry" not in str(path):
            want = [b64(h) for h in v["proof"] or []]
            assert tree.inclusion_proof(v["leafIdx"], v["treeSize"]) == want, path
    for path in CONSISTENCY:
        v = json.loads(path.read_text())
        if not v["wantErr"] and 0 < v["size1"] < v["size2"] <= 8:
            want = [b64(h) for h in v["proof"] or []]
            assert tree.consistency_proof(v["size1"], v["size2"]) == want, path


def test_witness_rule_for_the_empty_tree_is_opt_in() -> None:
    root = merkle.root_of([merkle.leaf_hash(b"x")])
    with pytest.raises(VerificationError):
        merkle.verify_consistency(0, 1, merkle.EMPTY_ROOT, root, [])
    merkle.verify_consistency(0, 1, merkle.EMPTY_ROOT, root, [], allow_empty_old=True)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(0, 1, b"\x00" * 32, root, [], allow_empty_old=True)


def test_frontier_reports_new_nodes_and_roots() -> None:
    f = merkle.Frontier()
    made = []
    for data in LEAVES:
        made += f.append(merkle.leaf_hash(data))
    assert f.root().hex() == TREE["roots_hex_by_size"]["8"]
    levels = TREE["node_hashes_hex_by_level"]["levels"]
    assert {(n.level, n.index): n.hash.hex() for n in made} == {
        (lvl, i): h for lvl, row in enumerate(levels) if lvl for i, h in enumerate(row)
    }
    assert merkle.Frontier.ids(7) == [(2, 0), (1, 2), (0, 6)]


# ----------------------------------------------------------------------------- properties


def _tree(n: int) -> merkle.MerkleTree:
    tree = merkle.MerkleTree()
    for k in range(n):
        tree.append(k.to_bytes(4, "big"))
    return tree


_BIG = _tree(300)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))), st.integers(0, 255))
def test_every_inclusion_proof_verifies_and_any_bit_flip_fails(ni: tuple[int, int], bit: int) -> None:
    n, i = ni
    leaf = merkle.leaf_hash(i.to_bytes(4, "big"))
    root = _BIG.root(n)
    proof = _BIG.inclusion_proof(i, n)
    inner, border = merkle.decompose_inclusion(i, n)
    assert len(proof) == inner + border
    merkle.verify_inclusion(i, n, leaf, proof, root)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(i, n, _flip(leaf, bit), proof, root)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(i, n, leaf, proof, _flip(root, bit))
    for k in range(len(proof)):
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(i, n, leaf, bad, root)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))), st.integers(0, 255))
def test_every_consistency_proof_verifies_and_any_bit_flip_fails(mn: tuple[int, int], bit: int) -> None:
    m, n = mn
    r1, r2 = _BIG.root(m), _BIG.root(n)
    proof = _BIG.consistency_proof(m, n)
    assert len(proof) == merkle.consistency_length(m, n)
    merkle.verify_consistency(m, n, r1, r2, proof)
    for bad_r1, bad_r2 in ((_flip(r1, bit), r2), (r1, _flip(r2, bit))):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, bad_r1, bad_r2, proof)
    for k in range(len(proof)):
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, r1, r2, bad)


NOTE = "audit.test.example.eu/log\n300\nAAAA\n\n— signature lines are not read here\n"


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 300), st.data())
def test_a_proof_tree_over_any_entries_writes_their_true_proofs(n: int, data: st.DataObject) -> None:
    indices = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)))
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in indices]
    tree = ProofTree(n, NOTE, indices, leaves)
    for need in tree.needs:  # subtrees without an entry at hand: the hash the neighbour's proof names
        tree.give(need, _BIG.inclusion_proof(need.index, n)[need.position])
    assert tree.root == _BIG.root(n)
    texts = [text for _, chunk in tree.texts() for text in chunk]
    assert texts == [format_proof(TlogProof(i, tuple(_BIG.inclusion_proof(i, n)), NOTE)).encode() for i in indices]
    # a wrong leaf or a wrong given hash never reaches the root
    k = data.draw(st.integers(0, len(indices) - 1))
    bad = ProofTree(n, NOTE, indices, [*leaves[:k], _flip(leaves[k], 9), *leaves[k + 1 :]])
    for need in bad.needs:
        bad.give(need, _BIG.inclusion_proof(need.index, n)[need.position])
    assert bad.root != _BIG.root(n)
    if tree.needs:
        j = data.draw(st.integers(0, len(tree.needs) - 1))
        bad = ProofTree(n, NOTE, indices, leaves)
        for k, need in enumerate(bad.needs):
            right = _BIG.inclusion_proof(need.index, n)[need.position]
            bad.give(need, _flip(right, 3) if k == j else right)
        assert bad.root != _BIG.root(n)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**40), st.data())
def test_plans_are_logarithmic_for_huge_trees(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1))
    plan = merkle.inclusion_plan(i, n)
    assert len(plan) == sum(merkle.decompose_inclusion(i, n))
    assert len(merkle.plan_ids(plan)) <= 2 * 64
    m = data.draw(st.integers(1, n))
    assert len(merkle.consistency_plan(m, n)) == merkle.consistency_length(m, n)
