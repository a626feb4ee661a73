/**
 * The JSON bodies of the `musc serve` HTTP API that the upload page reads (browser/page.js
 * type-checks against these). Types only: this module imports nothing, so the browser
 * type-check (tsconfig.browser.json) can include it without Node's types.
 */

/** The JSON answer of `POST /score`. */
export interface ScoreResponse {
  readonly name: string;
  readonly score: number;
  readonly imageScore: number;
  readonly decision: 'normal' | 'anomalous';
  readonly threshold: number;
  readonly heatmapUrl: string;
  readonly width: number;
  readonly height: number;
}

/** The bank a server scores against, as `GET /health` describes it. */
export interface BankSummary {
  readonly images: number;
  readonly reference: string;
  readonly backbone: string;
  readonly imageSize: number;
  /** How image scores are taken: `excess` over the bank's typical map, or the map's `max`. */
  readonly imageScore: 'excess' | 'max';
  readonly threshold: number;
}

/** Every error body: a human message and a stable code. */
export interface ErrorResponse {
  readonly error: string;
  readonly code: string;
}
