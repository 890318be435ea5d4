"""The ar.io / arweave.net GraphQL schema (strawberry), over `store.query`.

Tag names and values are bytes in the store; GraphQL carries them as UTF-8
strings both ways (undecodable bytes show as U+FFFD).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import replace
from decimal import Decimal

import strawberry
from starlette.concurrency import run_in_threadpool
from strawberry.extensions import AddValidationRules, MaxTokensLimiter
from strawberry.types import Info

from gateway.gql_budget import MAX_TOKENS, CostRule, QueryBudget
from gateway.gql_filters import TagCheck, split_tag_filters
from permastore.protocol import b64url
from permastore.store import InvalidQuery, Query
from permastore.store.query import decode_cursor, encode_cursor
from permastore.store.records import PENDING_HEIGHT_KEY, ObjectInfo

log = logging.getLogger("gateway.graphql")

MAX_PAGE = 100  # ar.io and arweave.net cap `first` at 100
SCAN_PAGE = 500  # rows read per store query while NEQ / WILDCARD filters are applied here
MAX_SCANNED = 200_000  # a filtered query reading more rows than this is refused, not left to run
MAX_CURSOR_LENGTH = 200  # this node's cursors are ~30 characters
MAX_SQL_INTEGER = 2**63 - 1
MAX_LIST_ARGUMENT = 1000  # ids, owners, recipients, bundledIn: each becomes SQL parameters
WINSTON_PER_AR = Decimal(10**12)


def winston_to_ar(winston: str) -> str:
    """Given winston as decimal text, return AR with 12 decimals, as arweave-js ar.winstonToAr does."""
    return f"{Decimal(winston) / WINSTON_PER_AR:.12f}"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@strawberry.enum
class SortOrder(enum.Enum):
    HEIGHT_ASC = "HEIGHT_ASC"
    HEIGHT_DESC = "HEIGHT_DESC"


@strawberry.enum
class TagOperator(enum.Enum):
    EQ = "EQ"
    NEQ = "NEQ"


@strawberry.enum
class TagMatch(enum.Enum):
    EXACT = "EXACT"
    WILDCARD = "WILDCARD"
    FUZZY_AND = "FUZZY_AND"
    FUZZY_OR = "FUZZY_OR"


@strawberry.input
class TagFilter:
    name: str
    values: list[str]
    op: TagOperator = TagOperator.EQ
    match: TagMatch = TagMatch.EXACT


@strawberry.input
class BlockFilter:
    min: int | None = None
    max: int | None = None


@strawberry.type
class Owner:
    address: str
    key: str


@strawberry.type
class Amount:
    winston: str
    ar: str


@strawberry.type
class MetaData:
    size: str
    type: str | None


@strawberry.type(name="Tag")
class GqlTag:  # the GraphQL type keeps Arweave's name
    name: str
    value: str


@strawberry.type(name="Block")
class GqlBlock:  # the GraphQL type keeps Arweave's name
    id: strawberry.ID
    timestamp: int
    height: int
    previous: strawberry.ID


@strawberry.type
class Bundle:
    id: strawberry.ID


def _amount(winston: str | None) -> Amount:
    winston = winston or "0"
    return Amount(winston=winston, ar=winston_to_ar(winston))


@strawberry.type(name="Transaction")
class GqlTransaction:  # the GraphQL type keeps Arweave's name
    id: strawberry.ID
    anchor: str
    signature: str
    recipient: str
    owner: Owner
    fee: Amount
    quantity: Amount
    data: MetaData
    tags: list[GqlTag]
    bundledIn: Bundle | None
    height: strawberry.Private[int | None]

    @strawberry.field
    def block(self, info: Info) -> GqlBlock | None:
        if self.height is None:
            return None
        miner = info.context["node"].miner
        found = miner.block_at(self.height)
        return block_of(found) if found is not None else None

    @strawberry.field(deprecation_reason="use bundledIn")
    def parent(self) -> Bundle | None:
        return self.bundledIn


def transaction_of(item) -> GqlTransaction:
    """Given an ObjectInfo, return its GraphQL Transaction."""
    return GqlTransaction(
        id=strawberry.ID(item.id),
        anchor=item.anchor or "",
        signature=b64url.encode(item.signature),
        recipient=item.target or "",
        owner=Owner(address=item.owner_address, key=b64url.encode(item.owner)),
        fee=_amount(item.reward),
        quantity=_amount(item.quantity),
        data=MetaData(size=str(item.data_size), type=item.content_type),
        tags=[GqlTag(name=_text(tag.name), value=_text(tag.value)) for tag in item.tags],
        bundledIn=Bundle(id=strawberry.ID(item.bundled_in)) if item.bundled_in else None,
        height=item.height,
    )


@strawberry.type
class PageInfo:
    hasNextPage: bool


@strawberry.type
class TransactionEdge:
    cursor: str
    node: GqlTransaction


@strawberry.type
class TransactionConnection:
    pageInfo: PageInfo
    edges: list[TransactionEdge]


def build_query(ids, owners, recipients, tags, bundled_in, block, first, after, sort) -> tuple[Query, list[TagCheck]]:
    """Given the GraphQL arguments, return the store Query and the tag checks applied to its rows here."""
    if first < 0:
        raise ValueError("first must be 0 or more")
    for name, values in (("ids", ids), ("owners", owners), ("recipients", recipients), ("bundledIn", bundled_in)):
        if values is not None and len(values) > MAX_LIST_ARGUMENT:
            raise ValueError(f"{name} takes at most {MAX_LIST_ARGUMENT} values, got {len(values)}")
    store_tags, checks = split_tag_filters(tags)
    if after is not None:
        check_cursor(after)
    query = Query(
        ids=list(ids or []),
        owners=list(owners or []),
        recipients=list(recipients or []),
        tags=store_tags,
        bundled_in=list(bundled_in) if bundled_in is not None else None,
        min_height=block.min if block else None,
        max_height=block.max if block else None,
        first=min(first, MAX_PAGE),
        after=after,
        sort=sort.value,
    )
    return query, checks


def check_cursor(cursor: str) -> None:
    """Given a `transactions` cursor, raise ValueError unless it is one this node could have given out."""
    try:
        height_key, seq = decode_cursor(cursor) if len(cursor) <= MAX_CURSOR_LENGTH else (-1, -1)
    except (InvalidQuery, RecursionError):
        height_key, seq = -1, -1
    if not (0 <= height_key <= MAX_SQL_INTEGER and 0 <= seq <= MAX_SQL_INTEGER):
        raise ValueError(f"invalid cursor {cursor!r:.60}: use the cursor of an edge this node returned")


def cursor_of(item) -> str:
    """Given an ObjectInfo from a query, return the cursor that continues after it."""
    return encode_cursor(item.height if item.height is not None else PENDING_HEIGHT_KEY, item.seq)


def _checked_page(store, query: Query, checks: list[TagCheck], budget: QueryBudget) -> tuple[list[ObjectInfo], bool]:
    """Given a store query and checks, return (up to query.first passing rows, whether more pass).

    Rows are read in the query's order, SCAN_PAGE at a time, so cursors stay the store's.
    """
    found: list[ObjectInfo] = []
    after, scanned = query.after, 0
    while True:
        budget.check_time()
        page = store.query(replace(query, first=SCAN_PAGE, after=after))
        for item in page.items:
            if all(check.holds(item.tags) for check in checks):
                if len(found) == query.first:
                    return found, True
                found.append(item)
        scanned += len(page.items)
        if not page.has_next or not page.items:
            return found, False
        if scanned >= MAX_SCANNED:
            raise ValueError(f"tag filters matched too few of {scanned} rows; narrow the query (EXACT tags, owners, block)")
        after = cursor_of(page.items[-1])


def answer_size(item) -> int:
    """Given an ObjectInfo, return a generous estimate of its bytes in a GraphQL answer."""
    tag_bytes = sum(len(tag.name) + len(tag.value) for tag in item.tags)
    return 2 * (len(item.owner) + len(item.signature) + tag_bytes) + 64 * len(item.tags) + 1024


def _connection(node, query: Query, checks: list[TagCheck], budget: QueryBudget) -> TransactionConnection:
    budget.check_time()
    if checks:
        items, has_next = _checked_page(node.store, query, checks, budget)
    else:
        page = node.store.query(query)
        items, has_next = page.items, page.has_next
    edges = []
    for item in items:
        if not budget.take(answer_size(item)):
            has_next = True  # the page stops here; its last cursor continues after the last edge sent
            break
        edges.append(TransactionEdge(cursor=cursor_of(item), node=transaction_of(item)))
    return TransactionConnection(pageInfo=PageInfo(hasNextPage=has_next), edges=edges)


@strawberry.type
class BlockEdge:
    cursor: str
    node: GqlBlock


@strawberry.type
class BlockConnection:
    pageInfo: PageInfo
    edges: list[BlockEdge]


def block_of(found) -> GqlBlock:
    """Given a store Block, return its GraphQL Block."""
    return GqlBlock(id=strawberry.ID(found.indep_hash), timestamp=found.timestamp, height=found.height, previous=strawberry.ID(found.previous))


def _block_connection(node, ids, height: BlockFilter | None, first: int, after: str | None, sort: SortOrder,
                      budget: QueryBudget) -> BlockConnection:
    """Given block filters, return one page of blocks by height (cursor: the last height seen)."""
    miner = node.miner
    tip_height, _ = miner.tip()
    low = max(0, height.min if height and height.min is not None else 0)
    high = min(tip_height, height.max if height and height.max is not None else tip_height)
    if after:
        if not after.isascii() or not after.isdigit() or len(after) > 19:
            raise ValueError("invalid block cursor")
        high, low = (min(high, int(after) - 1), low) if sort is SortOrder.HEIGHT_DESC else (high, max(low, int(after) + 1))
    heights = range(high, low - 1, -1) if sort is SortOrder.HEIGHT_DESC else range(low, high + 1)
    wanted = set(ids or [])
    edges: list[BlockEdge] = []
    has_next = False
    for scanned, h in enumerate(heights):
        if scanned % 256 == 0:
            budget.check_time()
        found = miner.block_at(h)
        if found is None or (wanted and found.indep_hash not in wanted):
            continue
        if len(edges) == min(first, MAX_PAGE):
            has_next = True
            break
        edges.append(BlockEdge(cursor=str(h), node=block_of(found)))
    return BlockConnection(pageInfo=PageInfo(hasNextPage=has_next), edges=edges)


@strawberry.type
class QueryRoot:
    @strawberry.field
    async def block(self, info: Info, id: str | None = None, height: int | None = None) -> GqlBlock | None:
        miner = info.context["node"].miner
        if id is not None:
            found = await run_in_threadpool(miner.block_by_hash, id)
        else:
            found = await run_in_threadpool(miner.block_at, height if height is not None else miner.tip()[0])
        return block_of(found) if found is not None else None

    @strawberry.field
    async def blocks(
        self,
        info: Info,
        ids: list[str] | None = None,
        height: BlockFilter | None = None,
        first: int = 10,
        after: str | None = None,
        sort: SortOrder = SortOrder.HEIGHT_DESC,
    ) -> BlockConnection:
        if first < 0:
            raise ValueError("first must be 0 or more")
        if ids is not None and len(ids) > MAX_LIST_ARGUMENT:
            raise ValueError(f"ids takes at most {MAX_LIST_ARGUMENT} values, got {len(ids)}")
        context = info.context
        return await run_in_threadpool(_block_connection, context["node"], ids, height, first, after, sort, context["budget"])

    @strawberry.field
    async def transaction(self, info: Info, id: strawberry.ID) -> GqlTransaction | None:
        if not b64url.is_id(id):
            raise ValueError("id must be 43 base64url characters")
        found = await run_in_threadpool(info.context["node"].store.info, str(id))
        return transaction_of(found) if found is not None else None

    @strawberry.field
    async def transactions(
        self,
        info: Info,
        ids: list[strawberry.ID] | None = None,
        owners: list[str] | None = None,
        recipients: list[str] | None = None,
        tags: list[TagFilter] | None = None,
        bundledIn: list[strawberry.ID] | None = None,
        block: BlockFilter | None = None,
        first: int = 10,
        after: str | None = None,
        sort: SortOrder = SortOrder.HEIGHT_DESC,
    ) -> TransactionConnection:
        query, checks = build_query(ids, owners, recipients, tags, bundledIn, block, first, after, sort)
        return await run_in_threadpool(_connection, info.context["node"], query, checks, info.context["budget"])


class QuietSchema(strawberry.Schema):
    """A schema that reports resolver errors to the client only: a bad cursor is not a server fault."""

    def process_errors(self, errors, execution_context=None) -> None:
        for error in errors:
            log.debug("GraphQL error: %s", error.message)


schema = QuietSchema(
    query=QueryRoot,
    extensions=[lambda: MaxTokensLimiter(MAX_TOKENS), lambda: AddValidationRules([CostRule])],
)
