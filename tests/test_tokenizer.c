/* Tokenizer: tokenizer data encoding (round trip, corruption suite), GGUF and
 * tokenizer.json loading, BPE and SPM encoding on hand-built vocabularies with
 * hand-computed ids, the streaming decoder, round trips on real text, chat
 * templates. Token-id parity with Hugging Face `tokenizers` on the real
 * models is tests/check_tokenizer.py. */
#include "test_util.h"

#include "gguf_writer.h"
#include "reader.h"
#include "tokdata_internal.h"
#include "tokenizer.h"

#include <stdbool.h>
#include <sys/stat.h>

/* ---- hand-built vocabularies ----------------------------------------------- */

/* GPT-2's byte -> code point mapping, written independently of tokenizer.c:
 * bytes in the three printable Latin-1 ranges stand for themselves, the rest
 * take 256, 257, ... in order. */
static void gpt2_char(int b, char *out)
{
    int printable[256] = {0};
    for (int c = '!'; c <= '~'; c++)
        printable[c] = 1;
    for (int c = 0xA1; c <= 0xAC; c++)
        printable[c] = 1;
    for (int c = 0xAE; c <= 0xFF; c++)
        printable[c] = 1;
    int cp = b;
    if (!printable[b]) {
        cp = 256;
        for (int c = 0; c < b; c++)
            cp += !printable[c];
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static char *dup(const char *s)
{
    return flock_tokdata_strndup(s, strlen(s));
}

/* Byte-level BPE: ids 0..255 are the bytes, then the merge results, then
 * a control token. */
enum { B_HE = 256, B_LL, B_HELL, B_HELLO, B_GW, B_IMSTART, B_NV };
static const char *const bpe_merges[] = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 w"};

static flock_tokenizer_data *make_bpe(void)
{
    flock_tokenizer_data *d = flock_tokdata_alloc(FLOCK_TOK_BPE, B_NV, 5, false);
    assert_non_null(d);
    char c[4];
    for (int b = 0; b < 256; b++) {
        gpt2_char(b, c);
        d->tokens[b] = dup(c);
    }
    d->tokens[B_HE] = dup("he");
    d->tokens[B_LL] = dup("ll");
    d->tokens[B_HELL] = dup("hell");
    d->tokens[B_HELLO] = dup("hello");
    d->tokens[B_GW] = dup("\xC4\xA0w"); /* "Ġw" = " w" */
    d->tokens[B_IMSTART] = dup("<|im_start|>");
    d->token_types[B_IMSTART] = FLOCK_TOKTYPE_CONTROL;
    for (int i = 0; i < 5; i++)
        d->merges[i] = dup(bpe_merges[i]);
    d->bos_id = B_IMSTART;
    d->chat_template = dup("{% for m in messages %}<|im_start|>...{% endfor %}");
    d->model_name = dup("test");
    return d;
}

/* SPM: <unk> <s> </s>, 256 byte tokens, then pieces with scores. */
enum { S_UNK = 0, S_BOS, S_EOS, S_BYTE0, S_SP = 3 + 256, S_A, S_B, S_C, S_SPA, S_AB, S_BC, S_CA, S_UAB, S_NV };

static flock_tokenizer_data *make_spm(void)
{
    flock_tokenizer_data *d = flock_tokdata_alloc(FLOCK_TOK_SPM, S_NV, 0, true);
    assert_non_null(d);
    d->tokens[S_UNK] = dup("<unk>");
    d->tokens[S_BOS] = dup("<s>");
    d->tokens[S_EOS] = dup("</s>");
    d->token_types[S_UNK] = FLOCK_TOKTYPE_UNKNOWN;
    d->token_types[S_BOS] = d->token_types[S_EOS] = FLOCK_TOKTYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        d->tokens[S_BYTE0 + b] = dup(buf);
        d->token_types[S_BYTE0 + b] = FLOCK_TOKTYPE_BYTE;
    }
    static const char *const pieces[] = {"\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81\x61" /* ▁a */, "ab", "bc"};
    static const float scores[] = {-1, -2, -2, -2, -3, -1, -0.5f};
    for (int i = 0; i < 7; i++) {
        d->tokens[S_SP + i] = dup(pieces[i]);
        d->scores[S_SP + i] = scores[i];
    }
    /* A control token that is a prefix of a user-defined one. */
    d->tokens[S_CA] = dup("<a>");
    d->token_types[S_CA] = FLOCK_TOKTYPE_CONTROL;
    d->tokens[S_UAB] = dup("<a><b>");
    d->token_types[S_UAB] = FLOCK_TOKTYPE_USER_DEFINED;
    d->unk_id = S_UNK;
    d->bos_id = S_BOS;
    d->eos_id = S_EOS;
    d->add_bos = true;
    d->add_space_prefix = true;
    return d;
}

static flock_tokenizer *make_tok(flock_tokenizer_data *d)
{
    flock_tokenizer *t = NULL;
    flock_error err = {0};
    flock_status st = flock_tokenizer_create(d, &t, &err);
    if (st)
        fail_msg("tokenizer_create: %s", err.msg);
    return t;
}

/* Encodes `text`, compares with the expected ids, and decodes back: the
 * result must be `decoded` (NULL: the text itself; skipped with add_special). */
static void expect_ids_dec(const flock_tokenizer *t, const char *text, bool add_special, bool parse_special,
                           const int32_t *want, size_t n_want, const char *decoded)
{
    int32_t *ids = NULL;
    size_t n = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokenizer_encode(t, text, strlen(text), add_special, parse_special, &ids, &n, &err),
                     FLOCK_OK);
    if (n != n_want)
        fail_msg("'%s': %zu ids, expected %zu", text, n, n_want);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i])
            fail_msg("'%s': id %zu is %d, expected %d", text, i, (int)ids[i], (int)want[i]);
    /* And back: decoding gives the text (control tokens printed). */
    char *back = NULL;
    assert_int_equal(flock_tokenizer_decode_all(t, ids, n, true, &back, &err), FLOCK_OK);
    if (decoded)
        assert_string_equal(back, decoded);
    else if (!add_special)
        assert_string_equal(back, text);
    free(back);
    free(ids);
}

static void expect_ids(const flock_tokenizer *t, const char *text, bool add_special, bool parse_special,
                       const int32_t *want, size_t n_want)
{
    expect_ids_dec(t, text, add_special, parse_special, want, n_want, NULL);
}

/* ---- tokenizer data encoding --------------------------------------------- */

static void assert_same_data(const flock_tokenizer_data *a, const flock_tokenizer_data *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->n_vocab, b->n_vocab);
    assert_int_equal(a->n_merges, b->n_merges);
    for (uint32_t i = 0; i < a->n_vocab; i++) {
        assert_string_equal(a->tokens[i], b->tokens[i]);
        assert_int_equal(a->token_types[i], b->token_types[i]);
        if (a->scores)
            assert_memory_equal(&a->scores[i], &b->scores[i], 4);
    }
    assert_true((a->scores == NULL) == (b->scores == NULL));
    for (uint32_t i = 0; i < a->n_merges; i++)
        assert_string_equal(a->merges[i], b->merges[i]);
    assert_int_equal(a->bos_id, b->bos_id);
    assert_int_equal(a->eos_id, b->eos_id);
    assert_int_equal(a->unk_id, b->unk_id);
    assert_int_equal(a->pad_id, b->pad_id);
    assert_int_equal(a->eot_id, b->eot_id);
    assert_int_equal(a->add_bos, b->add_bos);
    assert_int_equal(a->add_eos, b->add_eos);
    assert_int_equal(a->add_space_prefix, b->add_space_prefix);
    assert_true((a->pre_pattern == NULL) == (b->pre_pattern == NULL));
    if (a->pre_pattern)
        assert_string_equal(a->pre_pattern, b->pre_pattern);
    assert_true((a->chat_template == NULL) == (b->chat_template == NULL));
    if (a->chat_template)
        assert_string_equal(a->chat_template, b->chat_template);
    assert_true((a->model_name == NULL) == (b->model_name == NULL));
    if (a->model_name)
        assert_string_equal(a->model_name, b->model_name);
}

/* Seeds for tests/fuzz/fuzz_tokdata: written under $FLOCK_BUILD_DIR/seeds/tokdata
 * when ctest runs this program (best effort: a failure to write is no error). */
static void write_seed(const char *name, const uint8_t *blob, size_t size)
{
    const char *build = getenv("FLOCK_BUILD_DIR");
    if (!build || !*build || size > 64 * 1024)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/seeds", build);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/seeds/tokdata", build);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/seeds/tokdata/%s", build, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(blob, 1, size, f);
        fclose(f);
    }
}

static void roundtrip_one(flock_tokenizer_data *d)
{
    uint8_t *blob = NULL, *blob2 = NULL;
    size_t size = 0, size2 = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokdata_serialize(d, &blob, &size, &err), FLOCK_OK);
    flock_tokenizer_data *back = NULL;
    assert_int_equal(flock_tokdata_deserialize(blob, size, &back, &err), FLOCK_OK);
    assert_same_data(d, back);
    assert_int_equal(flock_tokdata_serialize(back, &blob2, &size2, &err), FLOCK_OK);
    assert_int_equal(size, size2);
    assert_memory_equal(blob, blob2, size);
    free(blob);
    free(blob2);
    flock_tokdata_free(back);
}

static void test_tokdata_roundtrip(void **state)
{
    (void)state;
    flock_tokenizer_data *b = make_bpe(), *s = make_spm();
    b->pre_pattern = dup("\\p{N}\n's|\\s+");
    b->eot_id = B_IMSTART;
    b->add_eos = true;
    roundtrip_one(b);
    roundtrip_one(s);
    uint8_t *blob = NULL;
    size_t size = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokdata_serialize(b, &blob, &size, &err), FLOCK_OK);
    write_seed("bpe", blob, size);
    free(blob);
    assert_int_equal(flock_tokdata_serialize(s, &blob, &size, &err), FLOCK_OK);
    write_seed("spm", blob, size);
    free(blob);
    flock_tokdata_free(b);
    flock_tokdata_free(s);
    flock_tokdata_free(NULL);
}

/* Truncation at every byte must fail; flipping any bit must fail or give data
 * a tokenizer can be built from and used. Never a crash (run under ASan). */
static void test_tokdata_corruption(void **state)
{
    (void)state;
    /* A small vocabulary keeps the bit-flip sweep short. */
    flock_tokenizer_data *d = flock_tokdata_alloc(FLOCK_TOK_SPM, 4, 2, true);
    d->tokens[0] = dup("<unk>");
    d->tokens[1] = dup("\xE2\x96\x81x");
    d->tokens[2] = dup("x");
    d->tokens[3] = dup("<0x41>");
    d->token_types[3] = FLOCK_TOKTYPE_BYTE;
    d->merges[0] = dup("\xE2\x96\x81 x");
    d->merges[1] = dup("x x");
    d->chat_template = dup("<|im_start|>");
    d->unk_id = 0;
    uint8_t *blob = NULL;
    size_t size = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokdata_serialize(d, &blob, &size, &err), FLOCK_OK);
    flock_tokdata_free(d);
    write_seed("small_spm", blob, size);

    flock_tokenizer_data *out = NULL;
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact-size copy so ASan sees over-reads */
        memcpy(copy, blob, cut);
        flock_status st = flock_tokdata_deserialize(copy, cut, &out, &err);
        assert_int_not_equal(st, FLOCK_OK);
        assert_null(out);
        free(copy);
    }
    int ok = 0, bad = 0;
    uint8_t *copy = malloc(size);
    for (size_t bit = 0; bit < size * 8; bit++) {
        memcpy(copy, blob, size);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        flock_status st = flock_tokdata_deserialize(copy, size, &out, &err);
        if (st == FLOCK_OK) {
            ok++;
            flock_tokenizer *t = NULL;
            if (flock_tokenizer_create(out, &t, &err) == FLOCK_OK) {
                int32_t *ids = NULL;
                size_t n = 0;
                assert_int_equal(flock_tokenizer_encode(t, " xx A\xC3", 5, true, true, &ids, &n, &err), FLOCK_OK);
                char *text = NULL;
                assert_int_equal(flock_tokenizer_decode_all(t, ids, n, false, &text, &err), FLOCK_OK);
                free(text);
                free(ids);
                flock_tokenizer_free(t);
            }
            flock_tokdata_free(out);
            out = NULL;
        } else {
            bad++;
            assert_null(out);
            assert_true(err.msg[0] != '\0');
        }
    }
    assert_true(bad > 0);
    assert_true(ok > 0); /* flips inside token text still decode */
    /* Future version, absurd counts, trailing bytes. */
    memcpy(copy, blob, size);
    flock_wr_u32(copy + 4, 2);
    assert_int_equal(flock_tokdata_deserialize(copy, size, &out, &err), FLOCK_E_VERSION);
    memcpy(copy, blob, size);
    flock_wr_u32(copy + 12, 0x7FFFFFFF);
    assert_int_equal(flock_tokdata_deserialize(copy, size, &out, &err), FLOCK_E_CORRUPT);
    memcpy(copy, blob, size);
    flock_wr_u32(copy + 16, 0xFFFFFFF0u);
    assert_int_equal(flock_tokdata_deserialize(copy, size, &out, &err), FLOCK_E_CORRUPT);
    uint8_t *longer = malloc(size + 1);
    memcpy(longer, blob, size);
    longer[size] = 0;
    assert_int_equal(flock_tokdata_deserialize(longer, size + 1, &out, &err), FLOCK_E_CORRUPT);
    assert_null(out);
    free(longer);
    free(copy);
    free(blob);
}

/* ---- BPE ------------------------------------------------------------------ */

static void test_bpe_encode(void **state)
{
    (void)state;
    flock_tokenizer_data *d = make_bpe();
    flock_tokenizer *t = make_tok(d);
    flock_tokdata_free(d); /* the tokenizer keeps its own copies */
    /* "hello": h e l l o -> (h e) rank 0 -> (l l) rank 1 -> (he ll) -> (hell o).
     * " world": the GPT-2 regex keeps the space with the word; Ġ w merges,
     * the rest stay bytes. */
    expect_ids(t, "hello world", false, true,
               (const int32_t[]){B_HELLO, B_GW, 'o', 'r', 'l', 'd'}, 6);
    /* Three l: both (l l) pairs have rank 0-equal; the leftmost merges first. */
    expect_ids(t, "lll", false, true, (const int32_t[]){B_LL, 'l'}, 2);
    /* Digits and punctuation are their own pieces: "he" then "11" then "!". */
    expect_ids(t, "he11!", false, true, (const int32_t[]){B_HE, '1', '1', '!'}, 4);
    /* Special token cut out before splitting; not when parse_special is off. */
    expect_ids(t, "<|im_start|>hello", false, true, (const int32_t[]){B_IMSTART, B_HELLO}, 2);
    int32_t *ids = NULL;
    size_t n = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokenizer_encode(t, "<|im_start|>", 12, false, false, &ids, &n, &err), FLOCK_OK);
    assert_int_equal(n, 12); /* no merges apply: one byte token per byte */
    free(ids);
    /* Invalid UTF-8 goes through as byte tokens and decodes as U+FFFD. */
    char gp[4];
    gpt2_char(0xFF, gp);
    expect_ids(t, "", false, true, NULL, 0);
    assert_int_equal(flock_tokenizer_encode(t, "a\xFF", 2, false, true, &ids, &n, &err), FLOCK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 'a');
    assert_int_equal(ids[1], 0xFF);
    char *back = NULL;
    assert_int_equal(flock_tokenizer_decode_all(t, ids, n, false, &back, &err), FLOCK_OK);
    assert_string_equal(back, "a\xEF\xBF\xBD");
    free(back);
    free(ids);
    flock_tokenizer_free(t);
}

/* ---- SPM ------------------------------------------------------------------ */

static void test_spm_encode(void **state)
{
    (void)state;
    flock_tokenizer_data *d = make_spm();
    flock_tokenizer *t = make_tok(d);
    flock_tokdata_free(d);
    /* "abc" -> "▁abc": pairs ▁a (-3), ab (-1), bc (-0.5): bc merges first,
     * then "abc" is no token, ▁a (-3) merges. With BOS. */
    expect_ids(t, "abc", true, false, (const int32_t[]){S_BOS, S_SPA, S_BC}, 3);
    /* "ab": ▁a (-3) vs ab (-1): ab wins; the ▁ stays alone. */
    expect_ids(t, "ab", false, false, (const int32_t[]){S_SP, S_AB}, 2);
    /* Spaces become ▁; "é" has no token: byte fallback to <0xC3> <0xA9>. */
    expect_ids(t, "a é", false, false,
               (const int32_t[]){S_SPA, S_SP, S_BYTE0 + 0xC3, S_BYTE0 + 0xA9}, 4);
    /* A control token spelled in the text, then the prefix space again (as
     * llama.cpp does), so the text does not come back unchanged. */
    expect_ids_dec(t, "a</s>a", false, true, (const int32_t[]){S_SPA, S_EOS, S_SPA}, 3, "a</s> a");
    expect_ids(t, "", false, false, NULL, 0);
    /* Longest special token wins; control tokens need parse_special, user-
     * defined ones do not. "<" ">" have no pieces: byte fallback. */
    expect_ids_dec(t, "<a><b>b<a>", false, true, (const int32_t[]){S_UAB, S_SP, S_B, S_CA}, 4, "<a><b> b<a>");
    expect_ids_dec(t, "<a>b<a><b>", false, false,
                   (const int32_t[]){S_SP, S_BYTE0 + '<', S_A, S_BYTE0 + '>', S_B, S_UAB}, 6, NULL);

    /* Streaming: <0xC3> alone prints nothing, <0xA9> completes "é". */
    flock_tok_decoder dec;
    flock_tok_decoder_init(&dec, false);
    char out[64];
    size_t n = 99;
    assert_int_equal(flock_tok_decode(t, &dec, S_SPA, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 1); /* the prefix space is dropped at the start */
    assert_memory_equal(out, "a", 1);
    assert_int_equal(flock_tok_decode(t, &dec, S_SP, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(flock_tok_decode(t, &dec, S_BYTE0 + 0xC3, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(flock_tok_decode(t, &dec, S_BYTE0 + 0xA9, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xC3\xA9", 2);
    /* A lead byte followed by a non-continuation: U+FFFD, then the byte. */
    assert_int_equal(flock_tok_decode(t, &dec, S_BYTE0 + 0xE2, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(flock_tok_decode(t, &dec, S_B, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\xEF\xBF\xBD" "b", 4);
    /* Pending bytes at the end come out on flush. */
    assert_int_equal(flock_tok_decode(t, &dec, S_BYTE0 + 0xF0, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(flock_tok_decoder_flush(&dec, out, sizeof out), 3);
    /* Control tokens print only when asked; bad ids and small buffers are errors. */
    assert_int_equal(flock_tok_decode(t, &dec, S_BOS, out, sizeof out, &n), FLOCK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(flock_tok_decode(t, &dec, S_NV, out, sizeof out, &n), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_tok_decode(t, &dec, S_SPA, out, 2, &n), FLOCK_E_RANGE);
    assert_true(flock_tokenizer_is_eog(t, S_EOS));
    assert_false(flock_tokenizer_is_eog(t, S_A));
    assert_int_equal(flock_tokenizer_find(t, "bc", 2), S_BC);
    flock_tokenizer_free(t);
    flock_tokenizer_free(NULL);
}

/* ---- tokenizer.json -------------------------------------------------------- */

static void test_from_hf_json(void **state)
{
    (void)state;
    /* The BPE vocabulary above as a tokenizer.json: merges both as "a b"
     * strings and as [a, b] pairs, the control token as an added token. */
    char *json = malloc(64 * 1024);
    size_t k = (size_t)sprintf(json, "{\"added_tokens\":[{\"id\":%d,\"content\":\"<|im_start|>\",\"special\":true}],"
                                     "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                                     "{\"type\":\"Digits\",\"individual_digits\":true},"
                                     "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}]},"
                                     "\"decoder\":{\"type\":\"ByteLevel\"},"
                                     "\"model\":{\"type\":\"BPE\",\"vocab\":{", B_IMSTART);
    for (int b = 0; b < 256; b++) {
        char c[4];
        gpt2_char(b, c);
        const char *esc = strcmp(c, "\"") == 0 ? "\\\"" : strcmp(c, "\\") == 0 ? "\\\\" : c;
        k += (size_t)sprintf(json + k, "\"%s\":%d,", esc, b);
    }
    k += (size_t)sprintf(json + k, "\"he\":%d,\"ll\":%d,\"hell\":%d,\"hello\":%d,\"\xC4\xA0w\":%d},"
                                   "\"merges\":[\"h e\",[\"l\",\"l\"],\"he ll\",[\"hell\",\"o\"],\"\xC4\xA0 w\"]}}",
                         B_HE, B_LL, B_HELL, B_HELLO, B_GW);
    const char *cfg = "{\"bos_token\":\"<|im_start|>\",\"add_bos_token\":false,"
                      "\"chat_template\":\"{{ '<|im_start|>system\\nHi there<|im_end|>' }}\"}";
    flock_tokenizer_data *d = NULL;
    flock_error err = {0};
    flock_status st = flock_tokdata_from_hf_json(json, k, cfg, strlen(cfg), &d, &err);
    if (st)
        fail_msg("from_hf_json: %s", err.msg);
    assert_int_equal(d->kind, FLOCK_TOK_BPE);
    assert_int_equal(d->n_vocab, B_NV);
    assert_int_equal(d->n_merges, 5);
    assert_string_equal(d->merges[1], "l l");
    assert_int_equal(d->bos_id, B_IMSTART);
    assert_false(d->add_bos);
    assert_int_equal(d->token_types[B_IMSTART], FLOCK_TOKTYPE_CONTROL);
    assert_non_null(d->pre_pattern);
    assert_non_null(strstr(d->chat_template, "Hi there"));
    flock_tokenizer *t = make_tok(d);
    /* Digits(individual) first: "11" is two pieces either way; "hello" as before. */
    expect_ids(t, "hello 12", false, true, (const int32_t[]){B_HELLO, ' ', '1', '2'}, 4);
    flock_tokenizer_free(t);
    flock_tokdata_free(d);
    /* Broken JSON and an unsupported model are errors with a message. */
    assert_int_equal(flock_tokdata_from_hf_json(json, k / 2, NULL, 0, &d, &err), FLOCK_E_CORRUPT);
    const char *uni = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}";
    assert_int_equal(flock_tokdata_from_hf_json(uni, strlen(uni), NULL, 0, &d, &err), FLOCK_E_UNSUPPORTED);
    free(json);
}

/* ---- GGUF metadata -> tokenizer data ---------------------------------------- */

typedef struct gguf_tok_opts {
    const char *model;       /* tokenizer.ggml.model; NULL: key absent */
    const char *pre;         /* tokenizer.ggml.pre; NULL: absent */
    bool tokens;             /* write tokenizer.ggml.tokens */
    uint64_t n_scores;       /* scores written (0: key absent) */
    int32_t bad_type;        /* token type written for token 3 */
    bool ids;                /* bos = 0xFFFFFFFF, eos = 2, add_bos_token = false */
} gguf_tok_opts;

/* A GGUF image with a 4-token vocabulary ("<s>", "</s>", "a", "b") and one merge. */
static flock_status gguf_tokdata(const gguf_tok_opts *o, flock_tokenizer_data **out, flock_error *err)
{
    static const char *const toks[4] = {"<s>", "</s>", "a", "b"};
    gw_buf kv = {0};
    if (o->model)
        gw_kv_str(&kv, "tokenizer.ggml.model", o->model);
    if (o->pre)
        gw_kv_str(&kv, "tokenizer.ggml.pre", o->pre);
    if (o->tokens) {
        gw_kv_arr(&kv, "tokenizer.ggml.tokens", 8, 4);
        for (int i = 0; i < 4; i++)
            gw_str(&kv, toks[i]);
    }
    if (o->n_scores) {
        gw_kv_arr(&kv, "tokenizer.ggml.scores", 6, o->n_scores);
        for (uint64_t i = 0; i < o->n_scores; i++)
            gw_f32(&kv, -(float)i);
    }
    gw_kv_arr(&kv, "tokenizer.ggml.token_type", 5, 4);
    for (int i = 0; i < 4; i++)
        gw_u32(&kv, (uint32_t)(i < 2 ? 3 : i == 3 ? o->bad_type : 1));
    gw_kv_arr(&kv, "tokenizer.ggml.merges", 8, 1);
    gw_str(&kv, "a b");
    if (o->ids) {
        gw_kv_scalar(&kv, "tokenizer.ggml.bos_token_id", 4, 0xFFFFFFFFu, 4);
        gw_kv_scalar(&kv, "tokenizer.ggml.eos_token_id", 4, 1, 4);
        gw_kv_scalar(&kv, "tokenizer.ggml.add_bos_token", 7, 0, 1);
        gw_kv_str(&kv, "tokenizer.chat_template", "<start_of_turn>");
    }
    size_t size = 0;
    uint8_t *img = gw_build(3, &kv, NULL, 0, 32, &size);
    free(kv.p);
    flock_gguf *g = NULL;
    flock_status st = flock_gguf_open_memory(img, size, &g, err);
    if (!st)
        st = flock_tokdata_from_gguf(g, out, err);
    flock_gguf_free(g);
    free(img);
    return st;
}

static void test_from_gguf_keys(void **state)
{
    (void)state;
    flock_tokenizer_data *d = NULL;
    flock_error err = {0};
    /* SPM with no ids or flags: llama.cpp's defaults. */
    gguf_tok_opts o = {.model = "llama", .tokens = true, .n_scores = 4, .bad_type = 1};
    if (gguf_tokdata(&o, &d, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(d->kind, FLOCK_TOK_SPM);
    assert_int_equal(d->bos_id, 1);
    assert_int_equal(d->eos_id, 2);
    assert_int_equal(d->unk_id, 0);
    assert_true(d->add_bos);
    assert_true(d->add_space_prefix);
    assert_float_equal(d->scores[3], -3.0f, 0);
    assert_int_equal(d->token_types[0], FLOCK_TOKTYPE_CONTROL);
    flock_tokdata_free(d);
    /* BPE, Qwen 2 pre-tokenizer, explicit ids: 0xFFFFFFFF is absent. */
    o = (gguf_tok_opts){.model = "gpt2", .pre = "qwen2", .tokens = true, .bad_type = 1, .ids = true};
    assert_int_equal(gguf_tokdata(&o, &d, &err), FLOCK_OK);
    assert_int_equal(d->kind, FLOCK_TOK_BPE);
    assert_int_equal(d->bos_id, -1);
    assert_int_equal(d->eos_id, 1);
    assert_false(d->add_bos);
    assert_false(d->add_space_prefix);
    assert_null(d->scores);
    assert_non_null(strstr(d->pre_pattern, "\\p{N}|"));
    assert_string_equal(d->model_name, "qwen2");
    assert_string_equal(d->chat_template, "<start_of_turn>");
    assert_string_equal(d->merges[0], "a b");
    flock_tokdata_free(d);
    /* Errors: unknown model or pre-tokenizer, missing vocabulary, scores of
     * the wrong length, a token type out of range. */
    const struct {
        gguf_tok_opts o;
        flock_status want;
    } bad[] = {
        {{.model = "bert", .tokens = true, .bad_type = 1}, FLOCK_E_UNSUPPORTED},
        {{.model = "gpt2", .pre = "no-such-pre", .tokens = true, .bad_type = 1}, FLOCK_E_UNSUPPORTED},
        {{.tokens = true, .bad_type = 1}, FLOCK_E_NOT_FOUND},
        {{.model = "llama", .bad_type = 1}, FLOCK_E_NOT_FOUND},
        {{.model = "llama", .tokens = true, .n_scores = 3, .bad_type = 1}, FLOCK_E_CORRUPT},
        {{.model = "llama", .tokens = true, .bad_type = 9}, FLOCK_E_CORRUPT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = NULL;
        err.msg[0] = '\0';
        assert_int_equal(gguf_tokdata(&bad[i].o, &d, &err), bad[i].want);
        assert_null(d);
        assert_non_null(strstr(err.msg, "GGUF tokenizer"));
    }
}

/* ---- real models ------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static flock_tokenizer *load_gguf_tok(const char *path, flock_tokenizer_data **dout)
{
    flock_gguf *g = NULL;
    flock_tokenizer_data *d = NULL;
    flock_error err = {0};
    if (flock_gguf_open(path, &g, &err) || flock_tokdata_from_gguf(g, &d, &err))
        fail_msg("%s: %s", path, err.msg);
    flock_gguf_free(g);
    flock_tokenizer *t = make_tok(d);
    *dout = d;
    return t;
}

/* The repository's tiny trained model (a SentencePiece vocabulary of 512) and
 * the test text (tests/data/README.md). */
static void test_tiny_spm(void **state)
{
    (void)state;
    char path[1024], text_path[1024];
    flock_test_tiny_model(path, sizeof path);
    flock_test_data_path("english.txt", text_path, sizeof text_path);
    flock_tokenizer_data *d = NULL;
    flock_tokenizer *t = load_gguf_tok(path, &d);
    assert_int_equal(d->kind, FLOCK_TOK_SPM);
    assert_int_equal(d->n_vocab, 512);
    assert_int_equal(d->bos_id, 1);
    assert_int_equal(d->eos_id, 2);
    assert_int_equal(d->pad_id, -1); /* 0xFFFFFFFF in the file */
    assert_true(d->add_bos);
    assert_true(d->add_space_prefix);
    /* The data survives the bundle encoding. */
    roundtrip_one(d);
    flock_tokdata_free(d);

    /* decode(encode(text)) == text, as one 1.2 MB text. */
    size_t len = 0;
    char *text = read_file(text_path, &len);
    assert_non_null(text);
    int32_t *ids = NULL;
    size_t n = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokenizer_encode(t, text, len, true, false, &ids, &n, &err), FLOCK_OK);
    assert_int_equal(ids[0], 1);
    assert_true(n > len / 8 && n < len); /* a 512-token vocabulary: a few bytes per token */
    char *back = NULL;
    assert_int_equal(flock_tokenizer_decode_all(t, ids, n, false, &back, &err), FLOCK_OK);
    assert_int_equal(strlen(back), len);
    assert_memory_equal(back, text, len);
    free(back);
    free(ids);
    free(text);
    flock_tokenizer_free(t);
}

static void test_smollm2_gguf(void **state)
{
    (void)state;
    char path[1024];
    flock_test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path);
    flock_tokenizer_data *d = NULL;
    flock_tokenizer *t = load_gguf_tok(path, &d);
    assert_int_equal(d->kind, FLOCK_TOK_BPE);
    assert_int_equal(d->n_vocab, 49152);
    assert_false(d->add_bos);
    assert_int_equal(d->eot_id, 2); /* <|im_end|> */
    flock_chat_template ct;
    flock_error err = {0};
    assert_int_equal(flock_chat_init(d->chat_template, "llama", &ct, &err), FLOCK_OK);
    assert_int_equal(ct.style, FLOCK_CHAT_CHATML);
    assert_string_equal(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    flock_chat_msg m = {"user", "Hi"};
    char *prompt = NULL;
    assert_int_equal(flock_chat_apply(&ct, &m, 1, true, &prompt, &err), FLOCK_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(flock_tokenizer_encode(t, prompt, strlen(prompt), true, true, &ids, &n, &err), FLOCK_OK);
    assert_int_equal(ids[0], 1); /* <|im_start|> */
    int im_end = 0;
    for (size_t i = 0; i < n; i++)
        im_end += ids[i] == 2;
    assert_int_equal(im_end, 2); /* closes the system and the user turn */
    free(ids);
    free(prompt);
    flock_chat_template_free(&ct);
    flock_tokenizer_free(t);
    flock_tokdata_free(d);
}

/* ---- chat templates ----------------------------------------------------------- */

static void test_chat_templates(void **state)
{
    (void)state;
    flock_error err = {0};
    flock_chat_template ct;
    const flock_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                                   {"user", " Why? "}};
    char *out = NULL;

    assert_int_equal(flock_chat_init("{{ '<|im_start|>' + m.role }}", "qwen2", &ct, &err), FLOCK_OK);
    assert_int_equal(ct.style, FLOCK_CHAT_CHATML);
    assert_null(ct.default_system);
    assert_int_equal(flock_chat_apply(&ct, msgs, 4, true, &out, &err), FLOCK_OK);
    assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                             "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n Why? <|im_end|>\n"
                             "<|im_start|>assistant\n");
    free(out);

    /* A literal default system prompt (SmolLM2's) is added before the first
     * message when that is not a system message, and not for no message. */
    assert_int_equal(flock_chat_init("{% for m in messages %}{{ '<|im_start|>system\nBe kind.<|im_end|>\n' }}",
                                     "llama", &ct, &err), FLOCK_OK);
    assert_string_equal(ct.default_system, "Be kind.");
    assert_int_equal(flock_chat_apply(&ct, msgs + 1, 1, true, &out, &err), FLOCK_OK);
    assert_string_equal(out, "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                             "<|im_start|>assistant\n");
    free(out);
    assert_int_equal(flock_chat_apply(&ct, msgs, 1, false, &out, &err), FLOCK_OK);
    assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n");
    free(out);
    assert_int_equal(flock_chat_apply(&ct, NULL, 0, true, &out, &err), FLOCK_OK);
    assert_string_equal(out, "<|im_start|>assistant\n");
    free(out);
    flock_chat_template_free(&ct);

    /* Gemma: no system turn (its text opens the first user turn), "model". */
    assert_int_equal(flock_chat_init(NULL, "gemma3", &ct, &err), FLOCK_OK);
    assert_int_equal(ct.style, FLOCK_CHAT_GEMMA);
    assert_int_equal(flock_chat_apply(&ct, msgs, 4, true, &out, &err), FLOCK_OK);
    assert_string_equal(out, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                             "<start_of_turn>model\nHello!<end_of_turn>\n"
                             "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    assert_int_equal(flock_chat_init("x <start_of_turn> y", "llama", &ct, &err), FLOCK_OK);
    assert_int_equal(ct.style, FLOCK_CHAT_GEMMA);

    assert_int_equal(flock_chat_init("<|start_header_id|>", "llama", &ct, &err), FLOCK_OK);
    assert_int_equal(ct.style, FLOCK_CHAT_LLAMA3);
    assert_int_equal(flock_chat_apply(&ct, msgs + 1, 1, false, &out, &err), FLOCK_OK);
    assert_string_equal(out, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    free(out);

    /* No template: ChatML by default; an unknown template is an error. */
    assert_int_equal(flock_chat_init(NULL, "llama", &ct, &err), FLOCK_OK);
    assert_int_equal(ct.style, FLOCK_CHAT_CHATML);
    assert_int_equal(flock_chat_init("{{ messages }}", "llama", &ct, &err), FLOCK_E_UNSUPPORTED);
    const flock_chat_msg bad = {"tool", "x"};
    assert_int_equal(flock_chat_apply(&ct, &bad, 1, false, &out, &err), FLOCK_E_INVALID_ARG);
    assert_string_equal(flock_chat_style_name(FLOCK_CHAT_GEMMA), "gemma");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokdata_roundtrip),
        cmocka_unit_test(test_tokdata_corruption),
        cmocka_unit_test(test_bpe_encode),
        cmocka_unit_test(test_spm_encode),
        cmocka_unit_test(test_from_hf_json),
        cmocka_unit_test(test_from_gguf_keys),
        cmocka_unit_test(test_tiny_spm),
        cmocka_unit_test(test_smollm2_gguf),
        cmocka_unit_test(test_chat_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
