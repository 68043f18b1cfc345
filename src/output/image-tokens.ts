// How many visual tokens of each image a reduction left at each stage, read from the
// engine's per-token report. The engine's stats give only sums over all images; video
// wants them per frame, where merging and filtering treat frames very differently.

import type { ReductionReport } from '../engine.js';

/** One image's visual tokens after each stage, under the names the stats use. */
export interface ImageTokens {
  /** Left by merging in the vision tower (recycled tokens are made later, so not counted). */
  after_encoder: number;
  /** Entering the language model's layers after the last prefill filter (recycled ones included). */
  after_prefill: number;
  /** Evicted from the KV cache while decoding. */
  decode_evicted: number;
}

export function tokensPerImage(report: ReductionReport): ImageTokens[] {
  const lastFilter = report.filters.at(-1);
  return report.images.map((image, index) => {
    const afterEncoder = image.tokens.filter((token) => !token.recycled).length;
    return {
      after_encoder: afterEncoder,
      after_prefill: lastFilter === undefined ? afterEncoder : (lastFilter.kept[index]?.length ?? 0),
      decode_evicted: image.tokens.filter((token) => token.evicted_at_step !== null).length,
    };
  });
}
