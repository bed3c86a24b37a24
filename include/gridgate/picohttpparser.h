/* picohttpparser ships inside libh2o-evloop 2.2.5 (the symbols are exported) but Debian installs no
 * header for it; these are its prototypes, as in picohttpparser.h of the h2o v2.2.5 tree. */
#ifndef GG_PICOHTTPPARSER_H
#define GG_PICOHTTPPARSER_H
#include <sys/types.h>

struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Each returns the number of bytes consumed on success, -1 on a parse error, -2 when incomplete. */
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path, size_t *path_len,
                      int *minor_version, struct phr_header *headers, size_t *num_headers, size_t last_len);
int phr_parse_response(const char *_buf, size_t len, int *minor_version, int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers, size_t last_len);
int phr_parse_headers(const char *buf, size_t len, struct phr_header *headers, size_t *num_headers, size_t last_len);

struct phr_chunked_decoder {
    size_t bytes_left_in_chunk; /* number of bytes left in current chunk */
    char consume_trailer;       /* if trailing headers should be consumed */
    char _hex_count;
    char _state;
};

/* Decodes chunked data in place; *bufsz becomes the decoded length. Returns the number of undecoded bytes
 * left after the terminating chunk (>= 0), -1 on error, -2 when more data is needed. */
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);
int phr_decode_chunked_is_in_data(struct phr_chunked_decoder *decoder);
#endif
