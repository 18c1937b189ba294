// Adds each row's weighted gradient, w * dF/dx (w * dF/dalpha * dF/dx for IDG), to its image's
// accumulator `slot`, in row order. The accumulators live on the GPU across the chunks of a group, so
// splitting an image's steps over chunks performs the same additions in the same order: chunked and
// unchunked results are bit-identical.
// With FOLDED the gradient is a max-pool's output gradient and the accumulators hold the gradient of
// the first conv's output (ACC_LEN values, CONV_H x CONV_W per channel) under that pool: each window's
// weighted gradient goes to where its maximum was (its windows are disjoint, KPH x KPW). finish.wgsl
// applies the conv's transpose to the sum. An invocation covers PX windows of one pooled row, so that
// each row's table entry, read for every row, serves several windows.
// With PACKED (and FOLDED) the choices are bytes, four to a u32 in output order (maxpool_path.wgsl):
// the window element of the maximum, or NO_CHOICE. An invocation reads the words under its windows
// once per row instead of a u32 per window.
// Specialization: WORKGROUP_SIZE, LEN (values per row of the gradient); FOLDED: ACC_LEN, CONV_H,
// CONV_W, KPH, KPW, POOL_H, POOL_W, PX.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Row>;
@group(0) @binding(4) var<storage, read> spans: array<Span>;
// Per image, `chunk.slots` accumulators of ACC_LEN values.
@group(0) @binding(5) var<storage, read_write> total: array<f32>;
//#if FOLDED
// Where each window's maximum was (an index into the conv's output), or NONE.
@group(0) @binding(6) var<storage, read> argmax: array<u32>;
const WIN: u32 = KPH * KPW;
const STRIPS: u32 = (POOL_W + PX - 1u) / PX;
// Invocations per span: strips of every pooled row of every channel.
const ITEMS: u32 = LEN / POOL_W * STRIPS;
// Packed words under PX windows that start at any byte of a word.
const WORDS: u32 = (PX + 3u) / 4u + 1u;
//#else
const ACC_LEN: u32 = LEN;
const WIN: u32 = 1u;
const PX: u32 = 1u;
const ITEMS: u32 = LEN;
//#endif

// Accumulator values of the invocation: PX windows of WIN elements each.
const VALUES: u32 = PX * WIN;

// Where accumulator value v of the invocation whose first is at `corner` lies, relative to it.
fn offset(v: u32) -> u32 {
//#if FOLDED
    let k = v % WIN;
    return (v / WIN) * KPW + (k / KPW) * CONV_W + k % KPW;
//#else
    return 0u;
//#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.spans * ITEMS) {
        return;
    }
    let span = spans[i / ITEMS];
    let item = i % ITEMS;
    let base = span.image * chunk.slots;
//#if FOLDED
    // Pooled row `line` (channel c, row py), windows px0 ..< px0 + count.
    let line = item / STRIPS;
    let px0 = (item % STRIPS) * PX;
    let count = min(PX, POOL_W - px0);
    let d0 = line * POOL_W + px0;
    let corner = ((line / POOL_H) * CONV_H + (line % POOL_H) * KPH) * CONV_W + px0 * KPW;
//#else
    let count = 1u;
    let d0 = item;
    let corner = item;
//#endif
    // Running sums per accumulator, written back when the row's slot changes. Each starts from what
    // earlier rows left, or from zero for its first row.
    var slot = rows[span.first_row].slot;
    var acc: array<f32, VALUES>;
    for (var v = 0u; v < VALUES; v++) {
        if (v / WIN < count && rows[span.first_row].fresh == 0u) {
            acc[v] = total[(base + slot) * ACC_LEN + corner + offset(v)];
        }
    }
    for (var r = 0u; r < span.count; r++) {
        let row = rows[span.first_row + r];
        if (row.slot != slot) {
            for (var v = 0u; v < VALUES; v++) {
                if (v / WIN < count) {
                    total[(base + slot) * ACC_LEN + corner + offset(v)] = acc[v];
                }
            }
            slot = row.slot;
            for (var v = 0u; v < VALUES; v++) {
                acc[v] = 0.0;
                if (v / WIN < count && row.fresh == 0u) {
                    acc[v] = total[(base + slot) * ACC_LEN + corner + offset(v)];
                }
            }
        }
        let w = select(row.weight, row.weight * row.slope, chunk.idg != 0u);
        let at = (span.first_row + r) * LEN + d0;
//#if PACKED
        // (LEN is a multiple of 4: a row's bytes start a word.)
        let skew = at % 4u;
        var words: array<u32, WORDS>;
        for (var q = 0u; q < WORDS; q++) {
            words[q] = argmax[min(at / 4u + q, (chunk.rows * LEN) / 4u - 1u)];
        }
//#endif
        for (var p = 0u; p < PX; p++) {
            if (p >= count) {
                break;
            }
            let g = w * grad[at + p];
//#if FOLDED
//#if PACKED
            // Window p's byte: in word (skew + p) / 4, which is p / 4 or the one after.
            let word = select(words[p / 4u], words[p / 4u + 1u], skew + p % 4u >= 4u);
            let chosen = (word >> (8u * ((skew + p) % 4u))) & 0xffu;
            for (var k = 0u; k < WIN; k++) {
                acc[p * WIN + k] = acc[p * WIN + k] + select(0.0, g, chosen == k);
            }
//#else
            let chosen = argmax[at + p];
            for (var k = 0u; k < WIN; k++) {
                let v = p * WIN + k;
                acc[v] = acc[v] + select(0.0, g, chosen == corner + offset(v));
            }
//#endif
//#else
            acc[p] = acc[p] + g;
//#endif
        }
    }
    for (var v = 0u; v < VALUES; v++) {
        if (v / WIN < count) {
            total[(base + slot) * ACC_LEN + corner + offset(v)] = acc[v];
        }
    }
}
