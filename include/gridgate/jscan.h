/* A validating JSON pull scanner that allocates nothing: the caller walks objects and arrays key by key
 * and reads scalars in place. It accepts only what jansson (flags 0) accepts, and gives up (returns -1)
 * on anything it cannot vouch for, so callers fall back to jansson for the exact error message. */
#ifndef GG_JSCAN_H
#define GG_JSCAN_H
#include <stddef.h>
#include <stdint.h>

#define GG_JSCAN_MAX_DEPTH 128

enum gg_jtype { GG_JNULL, GG_JTRUE, GG_JFALSE, GG_JINT, GG_JREAL, GG_JSTRING, GG_JOBJECT, GG_JARRAY };

/** A string as it appears in the input, validated (UTF-8, escapes, no NUL). */
typedef struct gg_jstr {
    const char *raw; /* between the quotes, escapes not decoded */
    size_t len;      /* raw length; 0 exactly when the decoded string is empty */
    size_t cps;      /* code points of the decoded string */
    int escaped;     /* raw holds at least one backslash escape */
} gg_jstr_t;

typedef struct gg_jval {
    enum gg_jtype type;
    long long i; /* GG_JINT */
    gg_jstr_t s; /* GG_JSTRING; for numbers, raw and len give the token */
} gg_jval_t;

typedef struct gg_jscan {
    const char *p, *end;
    int depth;
    uint8_t first[GG_JSCAN_MAX_DEPTH + 1];  /* no member read yet at this depth */
    uint8_t in_obj[GG_JSCAN_MAX_DEPTH + 1]; /* the container at this depth is an object */
} gg_jscan_t;

void gg_jscan_init(gg_jscan_t *s, const char *buf, size_t len);
/**
 * Reads one value. Scalars are consumed whole; for an object or array only the opening bracket is
 * consumed, and the caller continues with gg_jscan_key / gg_jscan_elem or drops it with gg_jscan_skip.
 * Returns 0 or -1 (invalid, or beyond what the scanner vouches for: depth, huge numbers, \u0000).
 */
int gg_jscan_value(gg_jscan_t *s, gg_jval_t *v);
/** In an object just opened: 1 and the next key (its colon consumed), 0 after the closing brace, -1. */
int gg_jscan_key(gg_jscan_t *s, gg_jstr_t *key);
/** In an array just opened: 1 when another element follows, 0 after the closing bracket, -1. */
int gg_jscan_elem(gg_jscan_t *s);
/** Consumes, validating, the rest of the innermost open container. 0 or -1. */
int gg_jscan_skip(gg_jscan_t *s);
/** Skips (validating) a value whose type was just read: a no-op for scalars. 0 or -1. */
int gg_jscan_drop(gg_jscan_t *s, const gg_jval_t *v);
/** After the top-level value: 0 if only whitespace remains. */
int gg_jscan_finish(gg_jscan_t *s);

/**
 * 1 when jansson (flags 0) would accept the document (an object or array, nothing after it), else 0.
 * The scanner decides; jansson is asked only about what the scanner does not vouch for.
 */
int gg_json_check(const char *buf, size_t len);

/** 1 when the string, decoded, equals the NUL-terminated `lit` (escaped strings never match). */
int gg_jstr_is(const gg_jstr_t *s, const char *lit);

#endif
