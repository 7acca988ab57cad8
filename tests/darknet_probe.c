/* A probe into darknet's own code (Debian's libdarknet, pjreddie's darknet), for tests.

   darknet_probe CFG WEIGHTS OUTDIR THRESH HIER NMS TREE_FIX IMAGE...

   For every image, through darknet's functions: load_image_color (OpenCV's imread in
   Debian's build), letterbox_image to the network size, network_predict, then
   get_network_boxes (THRESH, HIER, no map, pixel coordinates) and, when NMS > 0,
   do_nms_sort. Writes, per image index i, into OUTDIR:
     i.image   the decoded image (float32, CHW, RGB, /255) as darknet holds it
     i.input   the letterboxed network input (float32, CHW)
     i.output  the network's output (float32, darknet's layout): the region layer's, or a
               classifier's last layer before [cost]
   and prints one line per (detection, class) with a nonzero probability:
     i det class prob x y w h      (x, y, w, h: darknet's unclipped box, centre and size)
   with every float as %.9g (exact for float32).

   TREE_FIX = 1: for a region layer with a tree, the region output is recomputed as
   darknet's GPU path computes it (softmax_tree_kernel: one softmax per group over each
   anchor and cell, temperature 1, with darknet's own softmax()); darknet's CPU path
   (forward_region_layer without GPU) runs its tree softmax with temperature 0 and
   anchor-major offsets, which leaves NaN and overwrites the box entries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "darknet.h"

void softmax(float *input, int n, float temp, int stride, float *output);

static void dump(const char *dir, int i, const char *what, const float *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%d.%s", dir, i, what);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(data, sizeof(float), n, f);
    fclose(f);
}

static float logistic(float x) { return 1./(1. + exp(-x)); }

/* forward_region_layer's arithmetic with the GPU path's tree softmax. */
static void region_gpu_semantics(network *net)
{
    layer l = net->layers[net->n - 1];
    layer prev = net->layers[net->n - 2];
    int wh = l.w * l.h, size = l.coords + l.classes + 1;
    int n, k, s, g;
    memcpy(l.output, prev.output, l.outputs * sizeof(float));
    for (n = 0; n < l.n; ++n) {
        float *base = l.output + n * wh * size;
        for (k = 0; k < 2 * wh; ++k) base[k] = logistic(base[k]);
        for (k = 0; k < wh; ++k) base[l.coords * wh + k] = logistic(base[l.coords * wh + k]);
        float *cls_in = prev.output + n * wh * size + (l.coords + 1) * wh;
        float *cls_out = base + (l.coords + 1) * wh;
        for (g = 0; g < l.softmax_tree->groups; ++g) {
            int off = l.softmax_tree->group_offset[g] * wh;
            for (s = 0; s < wh; ++s)
                softmax(cls_in + off + s, l.softmax_tree->group_size[g], 1, wh,
                        cls_out + off + s);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: %s CFG WEIGHTS OUTDIR THRESH HIER NMS TREE_FIX IMAGE...\n", argv[0]);
        return 2;
    }
    network *net = load_network(argv[1], argv[2], 0);
    set_batch_network(net, 1);
    const char *outdir = argv[3];
    float thresh = atof(argv[4]), hier = atof(argv[5]), nms = atof(argv[6]);
    int tree_fix = atoi(argv[7]);
    layer l = net->layers[net->n - 1];
    layer out = get_network_output_layer(net);
    int i, j, k;
    for (i = 8; i < argc; ++i) {
        int idx = i - 8;
        image im = load_image_color(argv[i], 0, 0);
        image sized = letterbox_image(im, net->w, net->h);
        dump(outdir, idx, "image", im.data, (size_t)im.w * im.h * im.c);
        dump(outdir, idx, "input", sized.data, (size_t)sized.w * sized.h * sized.c);
        network_predict(net, sized.data);
        if (tree_fix && l.softmax_tree) region_gpu_semantics(net);
        dump(outdir, idx, "output", out.output, out.outputs);
        if (l.type != REGION) {
            free_image(im);
            free_image(sized);
            continue;
        }
        int nboxes = 0;
        detection *dets = get_network_boxes(net, im.w, im.h, thresh, hier, 0, 0, &nboxes);
        if (nms > 0) do_nms_sort(dets, nboxes, l.classes, nms);
        for (j = 0; j < nboxes; ++j) {
            for (k = 0; k < l.classes; ++k) {
                if (dets[j].prob[k] == 0) continue;
                box b = dets[j].bbox;
                printf("%d %d %d %.9g %.9g %.9g %.9g %.9g\n", idx, j, k, dets[j].prob[k],
                       b.x, b.y, b.w, b.h);
            }
        }
        free_detections(dets, nboxes);
        free_image(im);
        free_image(sized);
    }
    free_network(net);
    return 0;
}
