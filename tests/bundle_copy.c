/* Tests: bundle copies (bundle_copy.h). */
#include "bundle_copy.h"

#include "test_util.h"

void flock_test_bundle_copy(const char *from, const char *to, flock_test_section_edit edit, void *user,
                            const char *add_name, const void *add_data, size_t add_size)
{
    flock_error err = {0};
    flock_bundle *b = NULL;
    assert_int_equal(flock_bundle_open(from, &b, &err), FLOCK_OK);
    flock_bundle_writer_opts wo = flock_bundle_writer_default_opts();
    wo.zstd_level = 0;
    flock_bundle_writer *w = NULL;
    assert_int_equal(flock_bundle_writer_create(to, &wo, &w, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_set_manifest(w, flock_bundle_manifest(b), &err), FLOCK_OK);
    for (size_t i = 0; i < flock_bundle_tensor_count(b); i++) {
        flock_bundle_tensor t;
        assert_int_equal(flock_bundle_tensor_info(b, i, &t), FLOCK_OK);
        void *buf = malloc(t.nbytes ? t.nbytes : 1);
        assert_non_null(buf);
        assert_int_equal(flock_bundle_tensor_read(b, i, buf, t.nbytes, 1, &err), FLOCK_OK);
        assert_int_equal(flock_bundle_writer_add_tensor(w, t.name, t.dtype, t.n_dims, t.shape, buf, t.nbytes, &err),
                         FLOCK_OK);
        free(buf);
    }
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info si;
        assert_int_equal(flock_bundle_section_info(b, i, &si), FLOCK_OK);
        if (si.kind != FLOCK_SECTION_TOKENIZER && si.kind != FLOCK_SECTION_PROGRAM && si.kind != FLOCK_SECTION_KERNELS)
            continue; /* the manifest and the tensors are written above */
        void *data = NULL;
        size_t size = 0;
        assert_int_equal(flock_bundle_read_section(b, i, &data, &size, &err), FLOCK_OK);
        if (!edit || edit(&si, data, &size, user))
            assert_int_equal(flock_bundle_writer_add_section(w, si.kind, si.name, data, size, false, &err), FLOCK_OK);
        free(data);
    }
    if (add_name)
        assert_int_equal(
            flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, add_name, add_data, add_size, true, &err),
            FLOCK_OK);
    assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
    flock_bundle_writer_free(w);
    flock_bundle_close(b);
}
