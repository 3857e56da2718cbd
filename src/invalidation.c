/*
 * invalidation.c
 *	  Per-flag invalidation of the flag cache (flags.c): generations in
 *	  shared memory that a change to the flag tables raises at commit, the
 *	  row trigger's record of what a transaction changed, which cached
 *	  entries to load again, flag_cache_stats(), and the per-database change
 *	  counter that the HTTP server's event streams watch.  Needs
 *	  shared_preload_libraries; without it every change empties every
 *	  backend's whole flag cache (cache.c).
 *
 * Shared memory holds a global generation, a reset generation and
 * INVAL_SLOTS slot generations.  A change to a flag (its feature_flags row,
 * its configs, its prerequisite rows) maps to the slot of a hash of the
 * flag's id; one to its feature_flags row also to a "definition" slot (the
 * id hashed with another seed), which the flags that have it as a
 * prerequisite read; a change to a segment to the slot of a hash of its key
 * (a third seed); the creation of a flag or a change of its key also to
 * INVAL_NEW_KEY_SLOT, on which "no such flag" entries depend; a change to
 * environments or a TRUNCATE to the reset generation, which empties whole
 * caches.  The hashes mix in the database, whose backends share the slots.
 * A cache entry lists the slots it depends on (its flag, the definitions of
 * its prerequisites, every segment it reads, nested ones included:
 * opsflags_flag_depend_on_*, for any loader) and is stamped with the global generation read before its
 * load took its snapshot; a segment entry (segments.c) depends on its
 * segment's slot.  Their (slot, stamp) pairs are also kept in one compact
 * array, which is what a backend scans.  A marked segment entry marks every
 * entry that depends on its slot (one may have read it before the change).
 *
 * Writers: the row trigger (fired ALWAYS, so logical replication apply
 * counts) sets the slots' bits in a backend-local set.  At commit
 * (XACT_EVENT_COMMIT, which runs after ProcArrayEndTransaction has made the
 * commit visible to new snapshots) the backend takes g = ++generation,
 * raises each slot it changed (and the reset generation, if it must) to at
 * least g, and only then increments published.  Nothing there can fail.
 *
 * Why a backend never keeps an entry older than a commit it must see: the
 * entry was stamped with G, read before its snapshot was taken (a barrier
 * between).  A commit visible to that snapshot is in the entry.  A commit
 * that is not became visible after the snapshot, so its g = ++generation
 * came after G was read: g > G, and the slot ends >= g.  The backend
 * compares its entries' slots with their stamps whenever published differs
 * from the value it saw at its last comparison (or at the cache's reset),
 * reading published before the slots: a writer whose increment of published
 * it saw had raised its slots before, and one whose increment it did not
 * see makes published differ at its next comparison.  Slots only grow
 * (compare-and-swap to the larger value), so a slower writer with a smaller
 * g cannot undo a faster one.  Hash collisions only cost extra reloads.
 * Comparisons happen at the first lookup of a statement, transaction or
 * command (opsflags_cache_boundary), so one statement still gets one answer
 * per flag.
 *
 * The transaction's own changes are seen by its next command: the trigger
 * also sets the slots' bits in a second local set, which the cache applies
 * to its own entries at its next boundary, when the command that made them
 * is visible to a new snapshot (changes of the command still running are
 * kept for the boundary after).  A rolled-back (sub)transaction may have
 * left entries loaded from its changes, whose slots may not even be those
 * it touched ("no such flag" after a DELETE): entries loaded while the
 * transaction had changed flags carry its number, and a rollback marks
 * them and every slot it touched for reload.  Rollbacks of transactions
 * that changed flags are rare; a rollback publishes nothing.
 *
 * The same commit also raises a counter of its database (one of
 * INVAL_DATABASE_COUNTERS, by the database's oid) and sets the latch of the
 * process that watches that database, if any (the HTTP server while it
 * holds event streams, http_stream.c), which reads the counter without SQL
 * to learn that the flags changed; announce_change() does only that, for
 * changes outside the flag tables that clients see (API keys).
 *
 * A prepared transaction is committed later by COMMIT PREPARED, possibly in
 * another backend, with no callback of ours: PREPARE TRANSACTION of a
 * change to the flag tables sets a flag in shared memory after which the
 * relcache invalidations that the trigger queues for standbys (cache.c)
 * empty whole caches again, as without shared memory, until the server
 * restarts.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_bitutils.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "rules.h"

PG_FUNCTION_INFO_V1(opsflags_flag_cache_stats);
PG_FUNCTION_INFO_V1(opsflags_announce_change);

/* Seeds of the slot hashes, one per kind of key. */
#define FLAG_SLOT_SEED UINT64CONST(0x6f707366)
#define DEFINITION_SLOT_SEED UINT64CONST(0x64656669)
#define SEGMENT_SLOT_SEED UINT64CONST(0x7365676d)

#define SLOT_WORDS ((INVAL_SLOT_COUNT + 63) / 64)

/* Counters of commits by database; two databases may share one. */
#define INVAL_DATABASE_COUNTERS 64

typedef struct InvalShared
{
	pg_atomic_uint64 generation;	/* stamps commits */
	pg_atomic_uint64 published;		/* commits whose slots are raised */
	pg_atomic_uint64 reset_generation;
	pg_atomic_uint32 prepared;		/* a PREPARE changed the flag tables */
	/* commits that changed flags, by database (a hash of its oid) */
	pg_atomic_uint64 database_changes[INVAL_DATABASE_COUNTERS];
	/* who is woken by such a commit: a process (pgprocno + 1, 0: none) ... */
	pg_atomic_uint32 watcher;
	pg_atomic_uint32 watcher_database;	/* ... for commits in this database */
	pg_atomic_uint64 slot[INVAL_SLOT_COUNT];
} InvalShared;

static InvalShared *inval = NULL;

/* Slots this transaction changed: raised at commit. */
static uint64 xact_slots[SLOT_WORDS];
static bool xact_touched = false;
static bool xact_reset = false;
static bool xact_announce = false;	/* announce_change(): tell the watcher only */

/* Slots whose entries this backend must reload at its next boundary. */
static uint64 local_slots[SLOT_WORDS];
static bool local_touched = false;
static bool local_reset = false;

/*
 * Entries loaded while a transaction had changed flags may hold its changes
 * (and depend on slots of what it made them, say "no such flag" after a
 * DELETE): they carry its number (opsflags_inval_load_tag), and a rollback
 * reloads them all (local_rolled_back).
 */
static uint64 xact_number = 1;
static uint64 local_rolled_back = 0;

static CommandId record_cid;	/* the command of the transaction's last change */

/* What the trigger knows of a table: its kind and key column(s). */
typedef enum InvalTableKind
{
	TABLE_OTHER,
	TABLE_FLAGS,				/* id; flag_key */
	TABLE_CONFIGS,				/* flag_id */
	TABLE_PREREQUISITES,		/* flag_id */
	TABLE_SEGMENTS,				/* segment_key */
	TABLE_ENVIRONMENTS
} InvalTableKind;

typedef struct InvalTable
{
	Oid			relid;
	InvalTableKind kind;
	AttrNumber	attnum;			/* id, flag_id or segment_key */
	AttrNumber	keyattnum;		/* feature_flags.flag_key */
} InvalTable;

#define INVAL_TABLES 8
static InvalTable tables[INVAL_TABLES];
static int	ntables = 0;

/* ---------- slots ---------- */

/* Slots are shared by the databases: each hashes its keys its own way. */
static inline uint32
slot_of(const unsigned char *key, int len, uint64 seed)
{
	uint64		h = hash_bytes_extended(key, len, seed ^ ((uint64) MyDatabaseId << 32));

	return (uint32) (h % INVAL_SLOTS);
}

uint32
opsflags_inval_flag_slot(const pg_uuid_t *id)
{
	return slot_of(id->data, UUID_LEN, FLAG_SLOT_SEED);
}

/* A flag's own row only (key, variations), which its dependents read. */
uint32
opsflags_inval_definition_slot(const pg_uuid_t *id)
{
	return slot_of(id->data, UUID_LEN, DEFINITION_SLOT_SEED);
}

uint32
opsflags_inval_segment_slot(const char *key, int len)
{
	return slot_of((const unsigned char *) key, len, SEGMENT_SLOT_SEED);
}

static inline void
slot_set(uint64 *set, uint32 slot)
{
	set[slot / 64] |= UINT64CONST(1) << (slot % 64);
}

/* ---------- readers (flags.c) ---------- */

/* The generation to stamp a load with: read before its snapshot is taken. */
uint64
opsflags_inval_generation(void)
{
	uint64		g;

	if (inval == NULL)
		return 0;
	g = pg_atomic_read_u64(&inval->generation);
	pg_memory_barrier();
	return g;
}

/* What an entry loaded now carries (see xact_number): 0 if nothing to undo. */
uint64
opsflags_inval_load_tag(void)
{
	return xact_touched ? xact_number : 0;
}

/* Commits published so far: read before the slots it announces. */
uint64
opsflags_inval_published(void)
{
	uint64		p;

	if (inval == NULL)
		return 0;
	p = pg_atomic_read_u64(&inval->published);
	pg_memory_barrier();
	return p;
}

uint64
opsflags_inval_reset_generation(void)
{
	return inval == NULL ? 0 : pg_atomic_read_u64(&inval->reset_generation);
}

/*
 * Does a relcache invalidation of a flag table's primary key (the trigger's
 * announcement of a row change, cache.c) mean that the whole cache must go?
 * Without shared memory it is how changes are announced; on a standby the
 * only announcement (from WAL); after a PREPARE it may announce a COMMIT
 * PREPARED.  Otherwise per-flag invalidation has the change covered.
 */
bool
opsflags_inval_relcache_resets(void)
{
	return inval == NULL || RecoveryInProgress() ||
		pg_atomic_read_u32(&inval->prepared) != 0;
}

/* The transaction's own changes are applied to this backend's cache. */
static void
local_done(void)
{
	/*
	 * A change made by the command now running (say, from a trigger that
	 * runs after ours) is not visible to the loads it makes: keep the set for
	 * the next boundary.
	 */
	if (xact_touched && record_cid == GetCurrentCommandId(false))
		return;
	if (local_touched)
		memset(local_slots, 0, sizeof(local_slots));
	local_touched = false;
	local_reset = false;
	local_rolled_back = 0;
}

/*
 * Every (entry, slot) dependency of the cache, in one array that a
 * boundary scans in order: a few bytes each, where walking the entries
 * themselves would touch a few cache lines of each.  An entry loaded again
 * gets a new serial; the records of its former load are dead and go at the
 * next compaction.  The array lives in the cache's memory context.
 */
typedef struct DepRecord
{
	InvalItem  *item;			/* a flag's or a segment's */
	uint64		load_generation;
	uint32		slot;
	uint32		serial;			/* item->load_serial when it was recorded */
} DepRecord;

static DepRecord *records = NULL;
static int	nrecords = 0;
static int	maxrecords = 0;
static int	deadrecords = 0;
static uint32 next_serial = 0;

/*
 * The cache was emptied (its memory context with it): what it loads from
 * now on sees the transaction's changes so far.
 */
void
opsflags_inval_forget(void)
{
	records = NULL;
	nrecords = maxrecords = deadrecords = 0;
	local_done();
}

/* Drop the records of entries loaded again since. */
static void
records_compact(void)
{
	int			i,
				n = 0;

	for (i = 0; i < nrecords; i++)
		if (records[i].item->load_serial == records[i].serial)
			records[n++] = records[i];
	nrecords = n;
	deadrecords = 0;
}

/* Stamp an item about to be loaded: before its load takes its snapshot. */
void
opsflags_inval_stamp(InvalItem *item)
{
	item->load_generation = opsflags_inval_generation();
	item->load_tag = opsflags_inval_load_tag();
	/* A parallel leader reads with the statement's older snapshot. */
	item->provisional = IsInParallelMode();
}

/*
 * An item, at its place in its cache, was loaded: make room for its ndeps
 * records.  If it had been loaded before, its old_ndeps former records are
 * dead.  false: nothing to record.
 */
static bool
track_begin(InvalItem *item, bool reloaded, int old_ndeps, int ndeps, MemoryContext cxt)
{
	if (inval == NULL)
		return false;
	if (reloaded)
		deadrecords += old_ndeps;
	item->load_serial = ++next_serial;
	if (ndeps == 0)
		return false;
	if (deadrecords > 64 && deadrecords > nrecords / 2)
		records_compact();
	if (nrecords + ndeps > maxrecords)
	{
		int			n = Max(64, Max(maxrecords * 2, nrecords + ndeps));

		records = records == NULL ? MemoryContextAlloc(cxt, n * sizeof(DepRecord)) :
			repalloc(records, n * sizeof(DepRecord));
		maxrecords = n;
	}
	return true;
}

static inline void
track_record(InvalItem *item, uint32 slot)
{
	DepRecord  *r = &records[nrecords++];

	r->item = item;
	r->load_generation = item->load_generation;
	r->slot = slot;
	r->serial = item->load_serial;
}

/* A flag entry was loaded: record the slots it depends on. */
void
opsflags_inval_track(FlagEntry *entry, bool reloaded, int old_ndeps, MemoryContext cxt)
{
	int			i;

	if (!track_begin(&entry->inval, reloaded, old_ndeps, entry->ndeps, cxt))
		return;
	for (i = 0; i < entry->ndeps; i++)
		track_record(&entry->inval, flag_dep(entry, i));
}

/* A segment entry was loaded: it depends on its own slot only. */
void
opsflags_inval_track_segment(InvalItem *item, uint32 slot, bool reloaded, MemoryContext cxt)
{
	item->segment = true;
	item->segment_slot = slot;
	if (track_begin(item, reloaded, 1, 1, cxt))
		track_record(item, slot);
}

/* Slots of the segment entries marked at this boundary. */
static uint64 segment_slots[SLOT_WORDS];
static bool segments_marked = false;

static inline void
mark_stale(InvalItem *item, uint64 *invalidated)
{
	if (item->segment)
	{
		slot_set(segment_slots, item->segment_slot);
		segments_marked = true;
	}
	else if (!item->stale)
		(*invalidated)++;
	item->stale = true;
}

/* Mark the items (at item_offset in a cache's entries) loaded provisionally or rolled back. */
static void
mark_walk(HTAB *cache, Size item_offset, bool provisional, uint64 rolled_back,
		  uint64 *invalidated)
{
	HASH_SEQ_STATUS seq;
	char	   *e;

	if (cache == NULL)
		return;
	hash_seq_init(&seq, cache);
	while ((e = (char *) hash_seq_search(&seq)) != NULL)
	{
		InvalItem  *item = (InvalItem *) (e + item_offset);

		if ((provisional && item->provisional) ||
			(rolled_back != 0 && item->load_tag == rolled_back))
			mark_stale(item, invalidated);
	}
}

/*
 * At a boundary of the flag cache (flags.c): mark stale the flag and segment
 * entries that commits published since the last look (*seen_published), or
 * the transaction's own changes, have changed, and those loaded
 * provisionally.  Counts the flags in *invalidated.  false: the whole cache
 * must go instead (a reset generation moved).
 */
bool
opsflags_inval_refresh(HTAB *cache, HTAB *segments, uint64 *seen_published,
					   uint64 seen_reset_generation, bool *provisional, uint64 *invalidated)
{
	bool		local = local_touched || local_reset;
	uint64		published;
	bool		shared;
	int			i;

	if (inval == NULL)
		return true;
	published = opsflags_inval_published();
	shared = published != *seen_published;
	if (!local && !shared && !*provisional)
		return true;
	/* A key may have come or gone: evaluate_all reads its list again. */
	opsflags_flag_keys_reset();
	if (local_reset ||
		(shared && pg_atomic_read_u64(&inval->reset_generation) != seen_reset_generation))
	{
		local_done();
		return false;
	}
	for (i = 0; i < nrecords; i++)
	{
		DepRecord  *r = &records[i];

		if (((shared && pg_atomic_read_u64(&inval->slot[r->slot]) > r->load_generation) ||
			 (local && (local_slots[r->slot / 64] & (UINT64CONST(1) << (r->slot % 64))) != 0)) &&
			r->item->load_serial == r->serial)
			mark_stale(r->item, invalidated);
	}
	/* Rare: walk the entries themselves. */
	if (*provisional || (local && local_rolled_back != 0))
	{
		uint64		rolled_back = local ? local_rolled_back : 0;

		mark_walk(cache, offsetof(FlagEntry, inval), *provisional, rolled_back, invalidated);
		mark_walk(segments, offsetof(SegmentEntry, inval), *provisional, rolled_back, invalidated);
	}

	/*
	 * A flag that read a segment marked now may have read it stale (it was
	 * loaded by an earlier flag before the change that marks it arrived):
	 * every entry that depends on the segment's slot reloads, so none keeps
	 * pointing at a segment that is stale.
	 */
	if (segments_marked)
	{
		for (i = 0; i < nrecords; i++)
		{
			DepRecord  *r = &records[i];

			if ((segment_slots[r->slot / 64] & (UINT64CONST(1) << (r->slot % 64))) != 0 &&
				r->item->load_serial == r->serial)
				mark_stale(r->item, invalidated);
		}
		memset(segment_slots, 0, sizeof(segment_slots));
		segments_marked = false;
	}
	*seen_published = published;
	*provisional = false;
	local_done();
	return true;
}

/* ---------- writers: the row trigger and the transaction's end ---------- */

static InvalTable *
inval_table(Relation rel)
{
	InvalTable *t;
	const char *name;
	char	   *nsp;
	int			i;

	for (i = 0; i < ntables; i++)
		if (tables[i].relid == RelationGetRelid(rel))
			return &tables[i];
	if (ntables == INVAL_TABLES)
		ntables = 0;			/* tables dropped and created again: start over */
	t = &tables[ntables++];
	t->relid = RelationGetRelid(rel);
	t->kind = TABLE_OTHER;
	t->attnum = t->keyattnum = InvalidAttrNumber;

	nsp = get_namespace_name(RelationGetNamespace(rel));
	if (nsp == NULL || strcmp(nsp, "opsflags") != 0)
		return t;
	name = RelationGetRelationName(rel);
	if (strcmp(name, "feature_flags") == 0)
	{
		t->kind = TABLE_FLAGS;
		t->attnum = get_attnum(t->relid, "id");
		t->keyattnum = get_attnum(t->relid, "flag_key");
	}
	else if (strcmp(name, "feature_flag_configs") == 0)
	{
		t->kind = TABLE_CONFIGS;
		t->attnum = get_attnum(t->relid, "flag_id");
	}
	else if (strcmp(name, "flag_prerequisites") == 0)
	{
		t->kind = TABLE_PREREQUISITES;
		t->attnum = get_attnum(t->relid, "flag_id");
	}
	else if (strcmp(name, "user_segments") == 0)
	{
		t->kind = TABLE_SEGMENTS;
		t->attnum = get_attnum(t->relid, "segment_key");
	}
	else if (strcmp(name, "environments") == 0)
		t->kind = TABLE_ENVIRONMENTS;
	/* A table whose columns are not found resets, rather than guess. */
	if ((t->kind == TABLE_FLAGS && t->keyattnum == InvalidAttrNumber) ||
		(t->kind != TABLE_OTHER && t->kind != TABLE_ENVIRONMENTS &&
		 t->attnum == InvalidAttrNumber))
		t->kind = TABLE_ENVIRONMENTS;
	return t;
}

static void
record_slot(uint32 slot)
{
	slot_set(xact_slots, slot);
	slot_set(local_slots, slot);
	xact_touched = local_touched = true;
	record_cid = GetCurrentCommandId(false);
}

static void
record_reset(void)
{
	xact_reset = local_reset = true;
	xact_touched = true;
	record_cid = GetCurrentCommandId(false);
}

/* The slot of a row's key column (a flag id or a segment key). */
static void
record_row(InvalTable *t, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, t->attnum, desc, &isnull);

	if (isnull)
		return;
	if (t->kind == TABLE_SEGMENTS)
	{
		text	   *key = DatumGetTextPP(d);

		record_slot(opsflags_inval_segment_slot(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
	}
	else
	{
		record_slot(opsflags_inval_flag_slot(DatumGetUUIDP(d)));
		if (t->kind == TABLE_FLAGS)
			record_slot(opsflags_inval_definition_slot(DatumGetUUIDP(d)));
	}
}

/* Two text datums with the same bytes (a key's identity, whatever the collation). */
static bool
text_bytes_equal(Datum a, Datum b)
{
	text	   *ta = DatumGetTextPP(a);
	text	   *tb = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(ta) == VARSIZE_ANY_EXHDR(tb) &&
		memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) == 0;
}

/*
 * The flag cache trigger's part (cache.c): note what the row (or TRUNCATE)
 * changes, for this backend's next boundary and for the commit.  false: the
 * table is not one the flag cache reads, or there is no shared memory.
 */
bool
opsflags_inval_record(TriggerData *trigdata)
{
	InvalTable *t;
	TupleDesc	desc;

	if (inval == NULL)
		return false;
	t = inval_table(trigdata->tg_relation);
	if (t->kind == TABLE_OTHER)
		return false;
	if (t->kind == TABLE_ENVIRONMENTS || TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		record_reset();
		return true;
	}
	desc = RelationGetDescr(trigdata->tg_relation);
	record_row(t, trigdata->tg_trigtuple, desc);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		record_row(t, trigdata->tg_newtuple, desc);

	/* A key that named no flag may name one now. */
	if (t->kind == TABLE_FLAGS)
	{
		bool		oldnull,
					newnull;
		Datum		oldkey,
					newkey;

		if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
			record_slot(INVAL_NEW_KEY_SLOT);
		else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		{
			oldkey = heap_getattr(trigdata->tg_trigtuple, t->keyattnum, desc, &oldnull);
			newkey = heap_getattr(trigdata->tg_newtuple, t->keyattnum, desc, &newnull);
			if (oldnull || newnull || !text_bytes_equal(oldkey, newkey))
				record_slot(INVAL_NEW_KEY_SLOT);
		}
	}
	return true;
}

/* Raise a slot to at least g. */
static inline void
slot_raise(pg_atomic_uint64 *slot, uint64 g)
{
	uint64		old = pg_atomic_read_u64(slot);

	while (old < g && !pg_atomic_compare_exchange_u64(slot, &old, g))
		;
}

/* At commit, once it is visible: announce what the transaction changed. */
static void
inval_publish(void)
{
	uint64		g = pg_atomic_add_fetch_u64(&inval->generation, 1);
	int			w;

	for (w = 0; w < SLOT_WORDS; w++)
	{
		uint64		bits = xact_slots[w];

		while (bits != 0)
		{
			int			b = pg_rightmost_one_pos64(bits);

			slot_raise(&inval->slot[w * 64 + b], g);
			bits &= bits - 1;
		}
	}
	if (xact_reset)
		slot_raise(&inval->reset_generation, g);
	pg_atomic_fetch_add_u64(&inval->published, 1);
}

/* At commit: tell whoever watches this database's flags (the HTTP server's streams). */
static void
inval_announce(void)
{
	pg_atomic_fetch_add_u64(&inval->database_changes[MyDatabaseId % INVAL_DATABASE_COUNTERS], 1);
	if (pg_atomic_read_u32(&inval->watcher_database) == MyDatabaseId)
	{
		uint32		w = pg_atomic_read_u32(&inval->watcher);

		if (w != 0 && w <= ProcGlobal->allProcCount)
			SetLatch(&ProcGlobal->allProcs[w - 1].procLatch);
	}
}

/*
 * Commits that changed the flags of this database (flags, their configs and
 * prerequisites, segments, environments) so far: a counter that only grows,
 * read without a lock.  A database that shares its counter with another
 * sees that one's commits too, which only costs a spurious change.  0
 * without shared memory.
 */
uint64
opsflags_inval_database_changes(void)
{
	if (inval == NULL)
		return 0;
	return pg_atomic_read_u64(&inval->database_changes[MyDatabaseId % INVAL_DATABASE_COUNTERS]);
}

/*
 * Be woken (this process's latch set) by every commit that changes the
 * flags of this database, or no longer (watch false).  One watcher at a
 * time: the HTTP server.  The wake-up is a hint; the counter is the truth.
 */
void
opsflags_inval_watch(bool watch)
{
	if (inval == NULL)
		return;
	pg_atomic_write_u32(&inval->watcher_database, watch ? MyDatabaseId : InvalidOid);
#if PG_VERSION_NUM >= 170000
	pg_atomic_write_u32(&inval->watcher, watch ? GetNumberFromPGProc(MyProc) + 1 : 0);
#else
	pg_atomic_write_u32(&inval->watcher, watch ? MyProc->pgprocno + 1 : 0);
#endif
}

/*
 * The transaction's changes (some of them) are rolled back: entries loaded
 * from them reload.  Which slots a subtransaction touched is not known
 * apart from the transaction's, so all of these (rollbacks are rare).
 */
static void
rolled_back(void)
{
	int			w;

	for (w = 0; w < SLOT_WORDS; w++)
		local_slots[w] |= xact_slots[w];
	local_touched = true;
	local_reset |= xact_reset;
	local_rolled_back = xact_number;
}

/* The transaction is over: forget its slots (their entries reloaded if asked). */
static void
xact_done(bool reload_locally)
{
	if (reload_locally)
		rolled_back();
	memset(xact_slots, 0, sizeof(xact_slots));
	xact_touched = xact_reset = false;
	xact_number++;
}

static void
inval_xact_callback(XactEvent event, void *arg)
{
	if (xact_announce && (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
						  event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
						  event == XACT_EVENT_PREPARE))
	{
		xact_announce = false;
		if (!xact_touched && (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT))
			inval_announce();
	}
	if (!xact_touched)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			inval_publish();
			inval_announce();
			xact_done(false);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			xact_done(true);
			break;
		case XACT_EVENT_PRE_PREPARE:
			pg_atomic_write_u32(&inval->prepared, 1);
			break;
		case XACT_EVENT_PREPARE:
			xact_done(true);
			break;
		default:
			break;
	}
}

static void
inval_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && xact_touched)
		rolled_back();
}

/* ---------- flag_cache_stats() ---------- */

/* flag_cache_stats() -> jsonb: this backend's flag cache */
Datum
opsflags_flag_cache_stats(PG_FUNCTION_ARGS)
{
	OpsFlagCacheStats s;
	StringInfoData buf;

	opsflags_flag_cache_stats_get(&s);
	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "{\"entries\": " INT64_FORMAT ", \"hits\": " UINT64_FORMAT
					 ", \"loads\": " UINT64_FORMAT ", \"reloads\": " UINT64_FORMAT
					 ", \"invalidated\": " UINT64_FORMAT ", \"resets\": " UINT64_FORMAT
					 ", \"memory_bytes\": " INT64_FORMAT
					 ", \"per_flag_invalidation\": %s}",
					 s.entries, s.hits, s.loads, s.reloads, s.invalidated, s.resets,
					 s.live_bytes, inval != NULL ? "true" : "false");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * announce_change() -> void: at this transaction's commit, tell whoever
 * watches this database's flags (the HTTP server's streams) that what
 * clients are served may have changed, without invalidating any cache: for
 * changes outside the flag tables (API keys).
 */
Datum
opsflags_announce_change(PG_FUNCTION_ARGS)
{
	if (inval != NULL)
		xact_announce = true;
	PG_RETURN_VOID();
}

/* ---------- set-up ---------- */

static void
inval_shmem_attach(void)
{
	bool		found;
	InvalShared *s = ShmemInitStruct("opsflags flag invalidation", sizeof(InvalShared), &found);

	if (!found)
	{
		int			i;

		/* Loads stamp with generation >= 1, so slots at 0 never invalidate. */
		pg_atomic_init_u64(&s->generation, 1);
		pg_atomic_init_u64(&s->published, 0);
		pg_atomic_init_u64(&s->reset_generation, 0);
		pg_atomic_init_u32(&s->prepared, 0);
		for (i = 0; i < INVAL_DATABASE_COUNTERS; i++)
			pg_atomic_init_u64(&s->database_changes[i], 0);
		pg_atomic_init_u32(&s->watcher, 0);
		pg_atomic_init_u32(&s->watcher_database, InvalidOid);
		for (i = 0; i < INVAL_SLOT_COUNT; i++)
			pg_atomic_init_u64(&s->slot[i], 0);
	}
	inval = s;
}

void
opsflags_inval_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	opsflags_shmem_register(sizeof(InvalShared), NULL, inval_shmem_attach);
	RegisterXactCallback(inval_xact_callback, NULL);
	RegisterSubXactCallback(inval_subxact_callback, NULL);
}
