/*
 * rules.h
 *	  Targeting rules (docs/rules.md) compiled for evaluation: what the rule
 *	  compiler (rules.c, rules_clauses.c, rules_serve.c), the operators
 *	  (rules_ops.c, rules_values.c), the segment cache (segments.c) and
 *	  evaluation (evaluation.c) share.
 */
#ifndef OPSFLAGS_RULES_H
#define OPSFLAGS_RULES_H

#include "regex/regex.h"
#include "utils/jsonb.h"

#include "flags.h"

typedef enum RuleOp
{
	OP_IN,
	OP_NOT_IN,
	OP_STARTS_WITH,
	OP_ENDS_WITH,
	OP_CONTAINS,
	OP_MATCHES,
	OP_EQ,
	OP_LT,
	OP_LTE,
	OP_GT,
	OP_GTE,
	OP_BEFORE,
	OP_AFTER,
	OP_SEMVER_EQ,
	OP_SEMVER_LT,
	OP_SEMVER_LTE,
	OP_SEMVER_GT,
	OP_SEMVER_GTE,
	OP_IN_CIDR,
	OP_SEGMENT_MATCH,
	OP_UNSUPPORTED,
	OP_NEVER					/* a clause that did not compile (lenient load) */
} RuleOp;

/* Where an attribute's value comes from. */
typedef enum AttrKind
{
	ATTR_KEY,					/* the context's key */
	ATTR_NAME,					/* a member, else properties' member */
	ATTR_POINTER,				/* a JSON pointer */
	ATTR_RANDOM					/* "$random" (bucket_by only) */
} AttrKind;

typedef struct RuleAttr
{
	AttrKind	kind;
	int			nparts;			/* ATTR_NAME: 1; ATTR_POINTER: its tokens */
	char	  **parts;
	uint32	   *partlens;
	bool		is_current_time;	/* named "currentTime" */
	/* read as LaunchDarkly reads it: from one kind of context */
	bool		ld;
	const char *ctx_kind;		/* ld: the kind ("user" by default) */
	uint32		ctx_kindlen;
	bool		is_kind;		/* ld: the attribute "kind" */
	bool		is_anonymous;	/* ld: the attribute "anonymous" */
} RuleAttr;

/* A semantic version; pre-release points at its text (not copied). */
typedef struct Semver
{
	uint64		major;
	uint64		minor;
	uint64		patch;
	const char *pre;			/* NULL: none */
	int			prelen;
} Semver;

/* An IPv4 or IPv6 address with a prefix length. */
typedef struct CidrRange
{
	int			family;			/* 4 or 6 */
	int			bits;
	unsigned char addr[16];
} CidrRange;

struct SegmentEntry;

typedef struct RuleClause
{
	RuleAttr	attr;
	int16		slot;			/* the attribute's memo slot (-1: none) */
	int16		id;				/* same id, same clause: its result's memo
								 * slot (-1: none) */
	RuleOp		op;
	bool		negate;
	bool		ci;				/* case_insensitive */
	bool		ld;				/* semantics "launchdarkly" */
	int			nvalues;
	/* in / not_in */
	StrSet	   *strings;		/* lower-cased when ci */
	StrSet	   *numbers;		/* the 8 bytes of each double */
	bool		has_true;
	bool		has_false;
	/* string operators: the values (lower-cased when ci), nstrs of them */
	int			nstrs;
	char	  **strs;
	uint32	   *lens;
	regex_t    *regexes;		/* matches */
	char	  **prefixes;		/* ... a fixed prefix each match needs, in
								 * the database encoding (NULL: none) */
	uint32	   *prefixlens;
	double	   *nums;			/* numbers; dates as ms since 1970 */
	Semver	   *versions;
	CidrRange  *ranges;
	struct SegmentEntry **segments; /* segment_match */
	char	  **segment_keys;
} RuleClause;

/* bucket_by: attributes tried in order. */
typedef struct BucketBy
{
	int			nattrs;
	RuleAttr   *attrs;
} BucketBy;

typedef struct SplitOverride
{
	RuleAttr	attr;
	StrSet	   *values;
	int			variation;
} SplitOverride;

typedef enum ServeKind
{
	SERVE_VARIATION,
	SERVE_SPLIT,
	SERVE_OFF
} ServeKind;

typedef struct RuleServe
{
	ServeKind	kind;
	int			variation;		/* SERVE_VARIATION */
	int			nweights;		/* SERVE_SPLIT */
	int64	   *cumulative;
	int		   *variations;
	BucketBy	bucket_by;
	OpsMurmur3	prefix;			/* variant hash of "group:" */
	int			noverrides;
	SplitOverride *overrides;
	/* LaunchDarkly bucketing */
	bool		ld;
	OpsSha1		ld_prefix;		/* "key.salt." or "seed." hashed */
	double	   *ld_sums;		/* running totals of weight / 100000 */
	bool	   *untracked;
	bool		experiment;
} RuleServe;

typedef struct RuleGate
{
	int			percentage;
	BucketBy	bucket_by;
	OpsMurmur3	prefix;			/* rollout hash of "group:" */
	bool		ld;				/* LaunchDarkly bucketing: in when the bucket
								 * is below ld_weight (weight / 100000) */
	double		ld_weight;
	OpsSha1		ld_prefix;
} RuleGate;

typedef struct Rule
{
	char	   *id;
	int			nclauses;
	RuleClause *clauses;
	int			nsegments;
	struct SegmentEntry **segments;
	char	  **segment_keys;
	RuleGate   *gate;			/* NULL: none */
	RuleServe  *serve;			/* NULL: the config's */
	bool		exclude;		/* a segment's rule: holding puts the context
								 * out of the segment */
} Rule;

typedef struct RuleSet
{
	int			nrules;
	Rule	   *rules;
	int			nslots;			/* distinct attributes of the clauses */
	int			nids;			/* distinct clauses */
} RuleSet;

/*
 * What one evaluation of a rule set has found so far, on the stack: each
 * distinct attribute is read from the context once, each distinct clause
 * decided once (rules often repeat a clause).  Only the states are
 * cleared per evaluation.
 */
#define RULE_MEMO_SLOTS 32

typedef struct RuleMemo
{
	uint8		attr_state[RULE_MEMO_SLOTS];	/* 0: not read, 1: present,
												 * 2: missing */
	uint8		clause_state[RULE_MEMO_SLOTS];	/* 0: not decided, 1: holds,
												 * 2: does not */
	JsonbValue	attrs[RULE_MEMO_SLOTS];
} RuleMemo;

static inline void
rule_memo_init(RuleMemo *m, const RuleSet *set)
{
	memset(m->attr_state, 0, Min(set->nslots, RULE_MEMO_SLOTS));
	memset(m->clause_state, 0, Min(set->nids, RULE_MEMO_SLOTS));
}

/* What the rules of a flag or segment are compiled for. */
typedef struct RuleTarget
{
	const char *flag;			/* NULL for a segment */
	const char *environment;
	const char *segment;
	int			nvariations;	/* variation indexes must be below it */
	const char *group;			/* default group of gates and splits */
	bool		ld_bucketing;	/* bucketing "launchdarkly" */
	const char *bucket_key;		/* ... the flag's or segment's key */
	const char *salt;			/* ... and salt ("" when NULL) */
	bool		strict;			/* errors are raised, else a bad part never
								 * matches and one WARNING is given */
	bool		warned;
} RuleTarget;

/* A segment in the per-backend segment cache. */
typedef struct SegmentEntry
{
	char		key[OPSFLAGS_FLAG_KEY_MAXLEN + 1];
	InvalItem	inval;			/* reloaded in place when stale */
	uint64		generation;		/* the outermost lookup that last saw it */
	MemoryContext cxt;			/* what its load allocated */
	bool		exists;
	StrSet	   *users;
	StrSet	   *roles;
	RuleSet    *rules;
} SegmentEntry;

/* What one evaluation reads: the context, with its key and role. */
typedef struct EvalContext
{
	JsonbContainer *ctx;		/* NULL: none (the (key, user, role) form) */
	JsonbContainer *root;		/* the whole context (ctx may be its user) */
	const char *user;
	uint32		userlen;
	const char *role;
	uint32		rolelen;
	bool		have_random;
	char		random[24];		/* "$random", drawn once per evaluation */
	int			segment_depth;	/* segments being decided (nested ones) */
} EvalContext;

/*
 * How deep segments nest (a segment's rules naming segments): deeper ones
 * are neither loaded nor evaluated (the context is not in them).
 */
#define SEGMENT_DEPTH_MAX 32

/* Largest total of split weights: the variant hash's range (int). */
#define MAX_TOTAL_WEIGHT PG_INT32_MAX
/* The variant hash's seed (Unleash), distinct from the rollout's (0). */
#define VARIANT_SEED 86028157

/* Where in a document compilation is, for its messages. */
typedef struct RuleCompile
{
	RuleTarget *t;
	MemoryContext cxt;
	const char *rule_id;		/* NULL: rule_no names it */
	int			rule_no;		/* from 1; 0: not in a rule */
	int			clause_no;		/* from 1; 0: not in a clause */
	const char *part;			/* "serve", "rollout", ...: not in a clause */
	/* distinct attributes and clauses seen so far (memo slots) */
	const RuleAttr **slot_attrs;
	int			nslots;
	char	  **clause_texts;
	int			nids;
} RuleCompile;

/* rules.c: the compiler's shared parts */
extern bool rules_bad(RuleCompile *c, const char *fmt,...) pg_attribute_printf(2, 3);
extern bool rules_member(JsonbContainer *obj, const char *name, JsonbValue *v);
extern bool rules_is_object(JsonbValue *v);
extern bool rules_is_array(JsonbValue *v);
extern const char *rules_type_name(JsonbValue *v);
extern char *rules_copy_string(RuleCompile *c, JsonbValue *v);
extern bool rules_trimmed(JsonbValue *v, const char **s, int *len);
extern bool rules_in_scalar(RuleCompile *c, RuleClause *cl, int i, JsonbValue *v,
							const char **nums, uint32 *numlens, int *nnums);
extern bool rules_whole_number(JsonbValue *v, int64 lo, int64 hi, int64 *out);
extern bool rules_compile_attr(RuleCompile *c, JsonbValue *v, RuleAttr *a, const char *what);
extern bool rules_compile_bucket_by(RuleCompile *c, JsonbContainer *obj, BucketBy *b);
extern bool rules_compile_group(RuleCompile *c, JsonbContainer *obj, OpsMurmur3 *prefix, uint32 seed);
extern bool rules_compile_ld_attr(RuleCompile *c, JsonbValue *v, RuleAttr *a, const char *what,
								  JsonbValue *kind);
extern bool rules_compile_ld_bucket_by(RuleCompile *c, JsonbContainer *obj, BucketBy *b, JsonbValue *kind);
extern bool rules_context_kind(RuleCompile *c, JsonbContainer *obj, JsonbValue *kind);
extern void rules_ld_prefix(RuleCompile *c, OpsSha1 *prefix, const char *seed);
extern bool rules_compile_ld_value(RuleCompile *c, RuleClause *cl, int i, JsonbValue *v,
								   const char **strs, uint32 *lens, int *nstrs, const char **nums,
								   uint32 *numlens, int *nnums);

/* rules_ld.c: evaluation */
extern bool opsflags_ld_attr_value(const RuleAttr *a, EvalContext *ec, JsonbValue *out);
extern bool opsflags_ld_value_holds(const RuleClause *c, JsonbValue *v);
extern bool opsflags_ld_kinds_hold(const RuleClause *c, EvalContext *ec);

/* rules_clauses.c, rules_serve.c */
extern bool rules_compile_clause(RuleCompile *c, JsonbValue *cv, RuleClause *cl);
extern RuleServe *rules_compile_serve(RuleCompile *c, JsonbValue *sv);

/* rules.c */
extern RuleSet *opsflags_rules_compile(Jsonb *rules, RuleTarget *target, MemoryContext cxt);

/* rules_serve.c */
extern RuleServe *opsflags_serve_compile(Jsonb *serve, const char *what, RuleTarget *target,
										 MemoryContext cxt);
extern RuleServe *opsflags_serve_default(int on_variation, Jsonb *weights, RuleTarget *target,
										 MemoryContext cxt);

/* evaluation.c: what evaluate_all (evaluate_all.c) shares */
extern void opsflags_context_read(Jsonb *context, EvalContext *ec);

/* One evaluation as feature_explain reports it (evaluation.c) */
typedef struct OpsEvalDetail
{
	bool		evaluable;		/* a flag with a config in the environment */
	bool		enabled;
	const char *reason;			/* feature_explain's reason */
	int			reason_code;	/* FlagReason */
	Jsonb	   *value;			/* NULL: none */
	int			variation;		/* -1: none */
	const char *variant;		/* its name, or NULL */
	int			bucket;			/* 0: none */
	int			rule_index;		/* -1: no rule */
	int			rule_index_ld;	/* rules before it not made of LaunchDarkly's
								 * targets ("ld-target-<n>"): its
								 * LaunchDarkly ruleIndex */
	const char *rule;
	bool		in_experiment;
	int32		version;
} OpsEvalDetail;
extern bool opsflags_evaluate_detail(const char *env, const char *key, int keylen,
									 EvalContext *ec, OpsEvalDetail *out);
extern JsonbValue *opsflags_explain_push(JsonbParseState **ps, const char *env, const char *key,
										 int keylen, EvalContext *ec);

/* rules_serve.c */
extern bool opsflags_rule_matches(const Rule *rule, EvalContext *ec, RuleMemo *memo);
extern int	opsflags_serve_variation(const RuleServe *serve, EvalContext *ec, bool *in_experiment);

/* rules_ops.c */
extern bool opsflags_jsonb_member(JsonbContainer *obj, const char *name, uint32 len, JsonbValue *out);
extern bool opsflags_clause_holds(const RuleClause *c, EvalContext *ec, RuleMemo *memo);
extern bool opsflags_op_holds(const RuleClause *c, JsonbValue *v);
extern bool opsflags_attr_value(const RuleAttr *a, EvalContext *ec, JsonbValue *out);
extern double opsflags_ld_attr_bucket(const RuleAttr *a, const OpsSha1 *prefix, EvalContext *ec,
									  bool *had_context);
extern bool opsflags_attr_text(const RuleAttr *a, EvalContext *ec, const char **s, uint32 *len,
							   char *buf, int buflen);

/* rules_values.c */
extern bool opsflags_cidr_contains(const CidrRange *range, const CidrRange *a);
extern bool opsflags_parse_js_number(const char *s, int len, double *out);
extern bool opsflags_parse_date(const char *s, int len, double *ms);
extern bool opsflags_parse_semver(const char *s, int len, Semver *v);
extern bool opsflags_parse_ld_semver(const char *s, int len, Semver *v, char *buf, int buflen);
extern bool opsflags_parse_ld_date(const char *s, int len, double *ms);
extern int	opsflags_semver_cmp(const Semver *a, const Semver *b);
extern bool opsflags_parse_cidr(const char *s, int len, CidrRange *r);
extern bool opsflags_numeric_double(Numeric num, double *out);
extern int	opsflags_double_text(double d, char *buf, int buflen);
extern int	opsflags_lower(const char *s, int len, char *buf, int buflen);
extern int	opsflags_lower_prefix(const char *s, int len, char *buf, int buflen, int want);

/* segments.c */
extern SegmentEntry *opsflags_segment_lookup(const char *key, int keylen);
extern bool opsflags_segment_contains(SegmentEntry *seg, EvalContext *ec);
extern void opsflags_segment_cache_reset(MemoryContext cxt);
extern HTAB *opsflags_segment_cache(void);

/* flag_load.c (cxt NULL: for the flag entry being loaded) */
extern StrSet *opsflags_strset_build(const char **strs, const uint32 *lens, int n, MemoryContext cxt);

#endif							/* OPSFLAGS_RULES_H */
