"""A cost and time budget for every GraphQL query.

Before execution (a validation rule): the document's depth, its aliases, its fields and
its page fields (`transactions`, `blocks`), counted with fragments expanded, must stay
within the limits below; a 1,000-alias query is refused with a 400 at once instead of
running 1,000 queries. Fragments are counted once each and reused (memoised), so a
"fragment bomb" costs linear time to count.

During execution (a `QueryBudget` in the context): scans stop at a deadline, and pages
stop growing once the answer's estimated size would pass its byte budget; a shortened
page says `hasNextPage` and its cursors continue where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    ValidationRule,
)

MAX_DEPTH = 12  # ar.io's deepest useful query (transactions > edges > node > block > ...) is 5
MAX_ALIASES = 64
MAX_FIELDS = 2000  # field selections, fragments expanded
MAX_PAGE_FIELDS = 16  # `transactions` / `blocks` selections: each one is a store query or a scan
MAX_TOKENS = 10_000  # parser tokens of the document
TIME_BUDGET_S = 10.0
RESPONSE_BUDGET_BYTES = 16 * 1024 * 1024
PAGE_FIELDS = ("transactions", "blocks")


class BudgetExceeded(ValueError):
    """The query ran out of time: a GraphQL error for the client, saying how to narrow it."""


@dataclass
class QueryBudget:
    """The time and bytes one query may still spend; shared by every field it resolves."""

    deadline: float = field(default_factory=lambda: time.monotonic() + TIME_BUDGET_S)
    bytes_left: int = field(default_factory=lambda: RESPONSE_BUDGET_BYTES)

    def check_time(self) -> None:
        """Raise BudgetExceeded once the query's deadline has passed."""
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"query ran past its {TIME_BUDGET_S:g} s budget; narrow it (EXACT tags, owners, block range)")

    def take(self, size: int) -> bool:
        """Given an item's estimated answer size, spend it and return True, or False when it no longer fits."""
        if size > self.bytes_left:
            self.bytes_left = 0  # later fields get empty pages too, so the answer stays in order
            return False
        self.bytes_left -= size
        return True


@dataclass
class _Cost:
    depth: int = 0
    aliases: int = 0
    fields: int = 0
    pages: int = 0

    def add(self, other: _Cost, times: int = 1) -> None:
        self.depth = max(self.depth, other.depth)
        self.aliases += other.aliases * times
        self.fields += other.fields * times
        self.pages += other.pages * times


class _Counter:
    """Counts a document's cost with each fragment counted once (cycles count as nothing more)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]):
        self.fragments = fragments
        self.memo: dict[str, _Cost] = {}
        self.visiting: set[str] = set()

    def selection_set(self, node, root: bool) -> _Cost:
        cost = _Cost()
        for selection in node.selection_set.selections if node.selection_set else ():
            if isinstance(selection, FieldNode):
                inner = self.selection_set(selection, root=False) if selection.selection_set else _Cost()
                cost.add(_Cost(inner.depth + 1, inner.aliases + bool(selection.alias), inner.fields + 1,
                               inner.pages + (root and selection.name.value in PAGE_FIELDS)))
            elif isinstance(selection, InlineFragmentNode):
                cost.add(self.selection_set(selection, root))
            elif isinstance(selection, FragmentSpreadNode):
                cost.add(self.fragment(selection.name.value, root))
        return cost

    def fragment(self, name: str, root: bool) -> _Cost:
        key = f"{name}/{root}"
        if key in self.memo:
            return self.memo[key]
        definition = self.fragments.get(name)
        if definition is None or key in self.visiting:
            return _Cost()  # unknown or cyclic: graphql-core's own rules refuse the document
        self.visiting.add(key)
        cost = self.selection_set(definition, root)
        self.visiting.discard(key)
        self.memo[key] = cost
        return cost


def refusal(cost: _Cost) -> str | None:
    """Given a document's cost, return why it is refused, or None when it is within the limits."""
    for value, limit, what in (
        (cost.depth, MAX_DEPTH, "levels deep"),
        (cost.aliases, MAX_ALIASES, "aliases"),
        (cost.fields, MAX_FIELDS, "fields (fragments expanded)"),
        (cost.pages, MAX_PAGE_FIELDS, "transactions/blocks selections"),
    ):
        if value > limit:
            return f"query too costly: {value} {what}, at most {limit}; split it into several queries"
    return None


class CostRule(ValidationRule):
    """A graphql-core validation rule refusing documents past the cost limits."""

    def enter_document(self, node, *_args):
        fragments = {d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)}
        counter = _Counter(fragments)
        total = _Cost()
        for definition in node.definitions:
            if isinstance(definition, OperationDefinitionNode):
                total.add(counter.selection_set(definition, root=True))
        reason = refusal(total)
        if reason is not None:
            self.report_error(GraphQLError(reason))
        return self.BREAK if reason is not None else None
