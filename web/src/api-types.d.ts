// Generated from GET /openapi.json by test/browser/api-types.ts; do not edit.
// `node --import tsx test/browser/api-types.ts` writes it again; api-types.test.ts checks it.

/** The named schemas of the API (components.schemas), by name. */
export interface Schemas {
  /** Body of POST /v1/flux-2-klein-4b */
  GenerateBody: {
    /** Prompt describing the image to generate. Must contain a non-space character; at most 10000 characters of well-formed Unicode. */
    prompt: string;
    /** Add a reference image or leave blank for original ideas (text to image mode). 0 to 4 entries, each https://… or http://… with a host, or data:image/(png|jpeg|webp);base64,… with its bytes */
    image_urls?: string[];
    /** Negative prompt to avoid certain elements. Used only when cfg > 1; at most 10000 characters of well-formed Unicode. */
    negative_prompt?: string;
    /** Random seed for reproducibility. 0 to 2^53−1; -1 picks a random seed (extension). The seed used is reported. */
    seed?: number;
    /** Classifier-free guidance scale. cfg > 1 guides against negative_prompt (two model evaluations per step); 1 turns guidance off. */
    cfg?: number;
    /** Sampling method */
    sampler?: "euler" | "res_2s";
    /** Number of inference steps */
    steps?: number;
    /** Aspect ratio of the output image. match_input_image follows the first reference image and needs at least one. */
    aspect_ratio?: "1:1" | "2:3" | "3:2" | "3:4" | "4:3" | "4:5" | "5:4" | "9:16" | "16:9" | "21:9" | "9:21" | "match_input_image";
    /** Enable fast generation mode. false runs the exact bf16 reference path. */
    go_fast?: boolean;
    /** Output image format (jpg is accepted for jpeg) */
    image_format?: "png" | "jpeg" | "webp" | "jpg";
    /** Output image quality. Used by jpeg and webp; ignored by png. */
    quality?: number;
    /** Output width in pixels (extension): a multiple of 16, 64 to 2048; give with height, at most 4194304 pixels in all. Overrides aspect_ratio. */
    width?: number;
    /** Output height in pixels (extension): a multiple of 16, 64 to 2048; give with width. Overrides aspect_ratio. */
    height?: number;
    /** Answer JSON with the image base64-encoded instead of raw bytes (extension) */
    base64?: boolean;
    /** LoRA adapters applied to this request (extension), at most 3: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter. */
    loras?: Array<{
      /** An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server's LoRA directory (KLEIN_LORA_DIR) */
      path: string;
      /** For a repo id: the file in the repository (default pytorch_lora_weights.safetensors) */
      weight_name?: string;
      /** How strongly it applies (0 turns it off; negative inverts it) */
      scale?: number;
    }>;
  };
  /** Body of POST /v2/flux-2-klein-4b */
  AsyncBody: {
    /** Prompt describing the image to generate. Must contain a non-space character; at most 10000 characters of well-formed Unicode. */
    prompt: string;
    /** Add a reference image or leave blank for original ideas (text to image mode). 0 to 4 entries, each https://… or http://… with a host, or data:image/(png|jpeg|webp);base64,… with its bytes */
    image_urls?: string[];
    /** Negative prompt to avoid certain elements. Used only when cfg > 1; at most 10000 characters of well-formed Unicode. */
    negative_prompt?: string;
    /** Random seed for reproducibility. 0 to 2^53−1; -1 picks a random seed (extension). The seed used is reported. */
    seed?: number;
    /** Classifier-free guidance scale. cfg > 1 guides against negative_prompt (two model evaluations per step); 1 turns guidance off. */
    cfg?: number;
    /** Sampling method */
    sampler?: "euler" | "res_2s";
    /** Number of inference steps */
    steps?: number;
    /** Aspect ratio of the output image. match_input_image follows the first reference image and needs at least one. */
    aspect_ratio?: "1:1" | "2:3" | "3:2" | "3:4" | "4:3" | "4:5" | "5:4" | "9:16" | "16:9" | "21:9" | "9:21" | "match_input_image";
    /** Enable fast generation mode. false runs the exact bf16 reference path. */
    go_fast?: boolean;
    /** Output image format (jpg is accepted for jpeg) */
    image_format?: "png" | "jpeg" | "webp" | "jpg";
    /** Output image quality. Used by jpeg and webp; ignored by png. */
    quality?: number;
    /** Output width in pixels (extension): a multiple of 16, 64 to 2048; give with height, at most 4194304 pixels in all. Overrides aspect_ratio. */
    width?: number;
    /** Output height in pixels (extension): a multiple of 16, 64 to 2048; give with width. Overrides aspect_ratio. */
    height?: number;
    /** Answer JSON with the image base64-encoded instead of raw bytes (extension) */
    base64?: boolean;
    /** LoRA adapters applied to this request (extension), at most 3: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter. */
    loras?: Array<{
      /** An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server's LoRA directory (KLEIN_LORA_DIR) */
      path: string;
      /** For a repo id: the file in the repository (default pytorch_lora_weights.safetensors) */
      weight_name?: string;
      /** How strongly it applies (0 turns it off; negative inverts it) */
      scale?: number;
    }>;
    /** URL that receives one signed terminal event for this request (http:// or https:// with a host, at most 2048 characters; the image_urls address rules apply) */
    webhook_url?: string;
  };
  /** Body of POST /v1/{slug} for a base (undistilled) model: the defaults of steps and cfg are its own */
  GenerateBodyBase: {
    /** Prompt describing the image to generate. Must contain a non-space character; at most 10000 characters of well-formed Unicode. */
    prompt: string;
    /** Add a reference image or leave blank for original ideas (text to image mode). 0 to 4 entries, each https://… or http://… with a host, or data:image/(png|jpeg|webp);base64,… with its bytes */
    image_urls?: string[];
    /** Negative prompt to avoid certain elements. Used only when cfg > 1; at most 10000 characters of well-formed Unicode. */
    negative_prompt?: string;
    /** Random seed for reproducibility. 0 to 2^53−1; -1 picks a random seed (extension). The seed used is reported. */
    seed?: number;
    /** Classifier-free guidance scale. cfg > 1 guides against negative_prompt (two model evaluations per step); 1 turns guidance off. */
    cfg?: number;
    /** Sampling method */
    sampler?: "euler" | "res_2s";
    /** Number of inference steps */
    steps?: number;
    /** Aspect ratio of the output image. match_input_image follows the first reference image and needs at least one. */
    aspect_ratio?: "1:1" | "2:3" | "3:2" | "3:4" | "4:3" | "4:5" | "5:4" | "9:16" | "16:9" | "21:9" | "9:21" | "match_input_image";
    /** Enable fast generation mode. false runs the exact bf16 reference path. */
    go_fast?: boolean;
    /** Output image format (jpg is accepted for jpeg) */
    image_format?: "png" | "jpeg" | "webp" | "jpg";
    /** Output image quality. Used by jpeg and webp; ignored by png. */
    quality?: number;
    /** Output width in pixels (extension): a multiple of 16, 64 to 2048; give with height, at most 4194304 pixels in all. Overrides aspect_ratio. */
    width?: number;
    /** Output height in pixels (extension): a multiple of 16, 64 to 2048; give with width. Overrides aspect_ratio. */
    height?: number;
    /** Answer JSON with the image base64-encoded instead of raw bytes (extension) */
    base64?: boolean;
    /** LoRA adapters applied to this request (extension), at most 3: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter. */
    loras?: Array<{
      /** An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server's LoRA directory (KLEIN_LORA_DIR) */
      path: string;
      /** For a repo id: the file in the repository (default pytorch_lora_weights.safetensors) */
      weight_name?: string;
      /** How strongly it applies (0 turns it off; negative inverts it) */
      scale?: number;
    }>;
  };
  /** Body of POST /v2/{slug} for a base (undistilled) model */
  AsyncBodyBase: {
    /** Prompt describing the image to generate. Must contain a non-space character; at most 10000 characters of well-formed Unicode. */
    prompt: string;
    /** Add a reference image or leave blank for original ideas (text to image mode). 0 to 4 entries, each https://… or http://… with a host, or data:image/(png|jpeg|webp);base64,… with its bytes */
    image_urls?: string[];
    /** Negative prompt to avoid certain elements. Used only when cfg > 1; at most 10000 characters of well-formed Unicode. */
    negative_prompt?: string;
    /** Random seed for reproducibility. 0 to 2^53−1; -1 picks a random seed (extension). The seed used is reported. */
    seed?: number;
    /** Classifier-free guidance scale. cfg > 1 guides against negative_prompt (two model evaluations per step); 1 turns guidance off. */
    cfg?: number;
    /** Sampling method */
    sampler?: "euler" | "res_2s";
    /** Number of inference steps */
    steps?: number;
    /** Aspect ratio of the output image. match_input_image follows the first reference image and needs at least one. */
    aspect_ratio?: "1:1" | "2:3" | "3:2" | "3:4" | "4:3" | "4:5" | "5:4" | "9:16" | "16:9" | "21:9" | "9:21" | "match_input_image";
    /** Enable fast generation mode. false runs the exact bf16 reference path. */
    go_fast?: boolean;
    /** Output image format (jpg is accepted for jpeg) */
    image_format?: "png" | "jpeg" | "webp" | "jpg";
    /** Output image quality. Used by jpeg and webp; ignored by png. */
    quality?: number;
    /** Output width in pixels (extension): a multiple of 16, 64 to 2048; give with height, at most 4194304 pixels in all. Overrides aspect_ratio. */
    width?: number;
    /** Output height in pixels (extension): a multiple of 16, 64 to 2048; give with width. Overrides aspect_ratio. */
    height?: number;
    /** Answer JSON with the image base64-encoded instead of raw bytes (extension) */
    base64?: boolean;
    /** LoRA adapters applied to this request (extension), at most 3: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter. */
    loras?: Array<{
      /** An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server's LoRA directory (KLEIN_LORA_DIR) */
      path: string;
      /** For a repo id: the file in the repository (default pytorch_lora_weights.safetensors) */
      weight_name?: string;
      /** How strongly it applies (0 turns it off; negative inverts it) */
      scale?: number;
    }>;
    /** URL that receives one signed terminal event for this request (http:// or https:// with a host, at most 2048 characters; the image_urls address rules apply) */
    webhook_url?: string;
  };
  /** Body of POST /v1/images/generations (JSON) and the fields of POST /v1/images/edits (multipart) */
  OpenAiImagesBody: {
    /** Prompt describing the image to generate. Must contain a non-space character; at most 10000 characters of well-formed Unicode. */
    prompt: string;
    /** A served model, or an alias of one; absent: the default model */
    model?: string;
    /** Images to generate, all or nothing: 1 to 4 */
    n?: number;
    /** WIDTHxHEIGHT (multiples of 16, 64 to 2048 each) or auto (1024x1024, or the first image's ratio for edits) */
    size?: string;
    /** How images come back */
    response_format?: "b64_json" | "url";
    /** Image format */
    output_format?: "png" | "jpeg" | "webp";
    /** jpeg and webp quality, 0 to 100 (below 10 counts as 10) */
    output_compression?: number;
    /** Seed of the first image (image i uses seed + i), 0 to 9007199254740991; absent: random */
    seed?: number;
    /** Number of inference steps (extension); absent: the model's default (GET /v1/models) */
    steps?: number;
    /** Classifier-free guidance scale (extension), 1 turns it off; absent: the model's default */
    cfg?: number;
    /** Negative prompt to avoid certain elements. Used only when cfg > 1; at most 10000 characters of well-formed Unicode. */
    negative_prompt?: string;
    /** Sampling method */
    sampler?: "euler" | "res_2s";
    /** Enable fast generation mode. false runs the exact bf16 reference path. */
    go_fast?: boolean;
    /** LoRA adapters applied to this request (extension), at most 3: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter. */
    loras?: Array<{
      /** An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server's LoRA directory (KLEIN_LORA_DIR) */
      path: string;
      /** For a repo id: the file in the repository (default pytorch_lora_weights.safetensors) */
      weight_name?: string;
      /** How strongly it applies (0 turns it off; negative inverts it) */
      scale?: number;
    }>;
    /** Ignored (OpenAI's quality tier) */
    quality?: string;
    /** Ignored */
    style?: string;
    /** Ignored (OpenAI's end-user id) */
    user?: string;
    /** Ignored */
    background?: string;
    /** Ignored */
    moderation?: string;
    /** Ignored */
    input_fidelity?: string;
    /** Ignored */
    partial_images?: number;
    /** Only false: streaming is not offered here; follow a request with /v2 events instead */
    stream?: boolean;
  };
  /** Form of POST /v1/images/edits (multipart/form-data); numbers and booleans as their plain decimal or true/false spelling (Python's True/False too) */
  OpenAiEditsForm: {
    /** Prompt describing the image to generate. Must contain a non-space character; at most 10000 characters of well-formed Unicode. */
    prompt: string;
    /** A served model, or an alias of one; absent: the default model */
    model?: string;
    /** Images to generate, all or nothing: 1 to 4 */
    n?: number;
    /** WIDTHxHEIGHT (multiples of 16, 64 to 2048 each) or auto (1024x1024, or the first image's ratio for edits) */
    size?: string;
    /** How images come back */
    response_format?: "b64_json" | "url";
    /** Image format */
    output_format?: "png" | "jpeg" | "webp";
    /** jpeg and webp quality, 0 to 100 (below 10 counts as 10) */
    output_compression?: number;
    /** Seed of the first image (image i uses seed + i), 0 to 9007199254740991; absent: random */
    seed?: number;
    /** Number of inference steps (extension); absent: the model's default (GET /v1/models) */
    steps?: number;
    /** Classifier-free guidance scale (extension), 1 turns it off; absent: the model's default */
    cfg?: number;
    /** Negative prompt to avoid certain elements. Used only when cfg > 1; at most 10000 characters of well-formed Unicode. */
    negative_prompt?: string;
    /** Sampling method */
    sampler?: "euler" | "res_2s";
    /** Enable fast generation mode. false runs the exact bf16 reference path. */
    go_fast?: boolean;
    /** LoRA adapters applied to this request (extension), at most 3: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter. */
    loras?: Array<{
      /** An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server's LoRA directory (KLEIN_LORA_DIR) */
      path: string;
      /** For a repo id: the file in the repository (default pytorch_lora_weights.safetensors) */
      weight_name?: string;
      /** How strongly it applies (0 turns it off; negative inverts it) */
      scale?: number;
    }>;
    /** Ignored (OpenAI's quality tier) */
    quality?: string;
    /** Ignored */
    style?: string;
    /** Ignored (OpenAI's end-user id) */
    user?: string;
    /** Ignored */
    background?: string;
    /** Ignored */
    moderation?: string;
    /** Ignored */
    input_fidelity?: string;
    /** Ignored */
    partial_images?: number;
    /** Only false: streaming is not offered here; follow a request with /v2 events instead */
    stream?: boolean;
    /** 1 to 4 reference images (png, jpeg or webp), sent as image or image[] */
    image: string[];
  };
  /** The error envelope of every answer that is not a 200 */
  Error: {
    /** A human-readable message (what Segmind clients read) */
    error: string;
    /** The error code (a row of the error table) */
    code: "invalid_json" | "unsupported_media_type" | "validation_failed" | "image_fetch_failed" | "image_invalid" | "image_too_large" | "image_too_small" | "image_bad_ratio" | "url_blocked" | "invalid_lora" | "invalid_multipart" | "bad_url" | "bad_request" | "unauthorized" | "forbidden" | "invalid_link" | "link_expired" | "not_found" | "insufficient_credits" | "request_timeout" | "request_cancelled" | "idempotency_conflict" | "payload_too_large" | "rate_limited" | "headers_too_large" | "concurrency_limited" | "client_closed" | "internal" | "engine_unavailable" | "engine_failed" | "out_of_memory" | "not_ready" | "draining" | "queue_unavailable" | "no_workers" | "timeout";
    /** The request id, as in the x-request-id header */
    request_id: string;
    /** A validation error: one entry per bad field */
    details?: Array<{
      /** The body field (image_urls[2] for a list entry), header or parameter */
      field: string;
      /** What is wrong with it */
      message: string;
    }>;
  };
  /** The image as JSON (base64), with what the image headers say */
  GeneratedImage: {
    /** The image, base64-encoded */
    image: string;
    format: "png" | "jpeg" | "webp";
    width: number;
    height: number;
    /** The seed used */
    seed: number;
    request_id: string;
    /** Seconds from the start of processing to the encoded image */
    generation_time: number;
    /** Credits charged for this call */
    cost: number;
    /** The balance after it */
    remaining_credits: number;
  };
  /** A queued request (or, replayed by its Idempotency-Key, the request it already is) */
  Submitted: {
    request_id: string;
    /** QUEUED → PROCESSING → COMPLETED, FAILED or CANCELLED (the last three are final) */
    status: "QUEUED" | "PROCESSING" | "COMPLETED" | "FAILED" | "CANCELLED";
    /** GET: status, queue position and progress */
    status_url: string;
    /** GET: the request record */
    response_url: string;
    /** GET with the API key: the image, once COMPLETED. A stable API route that never expires while the record lives; for a link that needs no key, see the record's `output` */
    output_url: string;
    /** POST: cancel the request */
    cancel_url: string;
    /** GET: Server-Sent Events until the request ends. Carries a short-lived token (`expires`, `sig`; KLEIN_EVENTS_LINK_TTL, default 900 s) so that a client without the key, such as a browser EventSource, can connect; a fresh one comes with GET /v2/requests/{id} */
    events_url: string;
  };
  /** Status, queue position and progress of a request */
  Status: {
    request_id: string;
    /** QUEUED → PROCESSING → COMPLETED, FAILED or CANCELLED (the last three are final) */
    status: "QUEUED" | "PROCESSING" | "COMPLETED" | "FAILED" | "CANCELLED";
    /** Requests ahead of this one plus one while QUEUED; 0 otherwise */
    queue_position: number;
    /** The step running (or the last, once COMPLETED); null before the first */
    progress: {
      step: number;
      total: number;
    } | null;
    /** Why it FAILED or was CANCELLED; else null */
    error: {
      code: string;
      message: string | null;
    } | null;
    /** Timings and money of the request */
    metrics: {
      /** From submission to the start of processing, in seconds; null until known */
      queue_time: number | null;
      /** Generation on the engine, in seconds; null until known */
      inference_time: number | null;
      /** From submission to the end, in seconds; null until known */
      total_time: number | null;
      /** Credits charged: 0 unless COMPLETED */
      cost: number;
      /** The account's balance now (the request record only) */
      remaining_credits?: number;
      [key: string]: unknown;
    };
  };
  /** The full record of a request (cog style: input, status, output, error, metrics, times) */
  RequestRecord: {
    request_id: string;
    /** QUEUED → PROCESSING → COMPLETED, FAILED or CANCELLED (the last three are final) */
    status: "QUEUED" | "PROCESSING" | "COMPLETED" | "FAILED" | "CANCELLED";
    /** The parameters the request runs with: defaults applied, the seed it uses, width and height resolved; a data: URI is replaced by its sha256 and length */
    input: {
      [key: string]: unknown;
    };
    /** Once COMPLETED and delivered, a link to the image that works without the API key until it expires (KLEIN_LINK_TTL, default 1 h): a presigned URL on S3 storage, else this server's output route signed with `expires` and `sig` (GET /v2/requests/{id} signs a fresh one); the image base64-encoded with ?base64=true; else null */
    output: string | null;
    /** Why it FAILED or was CANCELLED; else null */
    error: {
      code: string;
      message: string | null;
    } | null;
    /** Timings and money of the request */
    metrics: {
      /** From submission to the start of processing, in seconds; null until known */
      queue_time: number | null;
      /** Generation on the engine, in seconds; null until known */
      inference_time: number | null;
      /** From submission to the end, in seconds; null until known */
      total_time: number | null;
      /** Credits charged: 0 unless COMPLETED */
      cost: number;
      /** The account's balance now (the request record only) */
      remaining_credits?: number;
      [key: string]: unknown;
    };
    /** When it was submitted */
    created_at: string | null;
    /** When processing started; null before */
    started_at: string | null;
    /** When it ended; null before */
    completed_at: string | null;
    /** When the record and its output are deleted */
    expires_at: string | null;
    /** GET: status, queue position and progress */
    status_url: string;
    /** GET: the request record */
    response_url: string;
    /** GET with the API key: the image, once COMPLETED. A stable API route that never expires while the record lives; for a link that needs no key, see the record's `output` */
    output_url: string;
    /** POST: cancel the request */
    cancel_url: string;
    /** GET: Server-Sent Events until the request ends. Carries a short-lived token (`expires`, `sig`; KLEIN_EVENTS_LINK_TTL, default 900 s) so that a client without the key, such as a browser EventSource, can connect; a fresh one comes with GET /v2/requests/{id} */
    events_url: string;
  };
  /** The request after a cancel (never charged when cancelled) */
  Cancellation: {
    request_id: string;
    /** QUEUED → PROCESSING → COMPLETED, FAILED or CANCELLED (the last three are final) */
    status: "QUEUED" | "PROCESSING" | "COMPLETED" | "FAILED" | "CANCELLED";
    /** false when the request had already ended */
    cancelled: boolean;
  };
  /** event: queued — sent again whenever the position changes */
  QueuedEvent: {
    request_id: string;
    /** Place in the queue (1: next) */
    position: number;
  };
  /** event: progress — one per sampler step */
  ProgressEvent: {
    step: number;
    total: number;
    /** A low-resolution preview of this step (with ?preview=true) */
    preview?: {
      width: number;
      height: number;
      png_base64: string;
    };
  };
  /** event: completed, failed or cancelled — the request record; the stream then ends */
  TerminalEvent: {
    request_id: string;
    /** QUEUED → PROCESSING → COMPLETED, FAILED or CANCELLED (the last three are final) */
    status: "QUEUED" | "PROCESSING" | "COMPLETED" | "FAILED" | "CANCELLED";
    /** The parameters the request runs with: defaults applied, the seed it uses, width and height resolved; a data: URI is replaced by its sha256 and length */
    input: {
      [key: string]: unknown;
    };
    /** Once COMPLETED and delivered, a link to the image that works without the API key until it expires (KLEIN_LINK_TTL, default 1 h): a presigned URL on S3 storage, else this server's output route signed with `expires` and `sig` (GET /v2/requests/{id} signs a fresh one); the image base64-encoded with ?base64=true; else null */
    output: string | null;
    /** Why it FAILED or was CANCELLED; else null */
    error: {
      code: string;
      message: string | null;
    } | null;
    /** Timings and money of the request */
    metrics: {
      /** From submission to the start of processing, in seconds; null until known */
      queue_time: number | null;
      /** Generation on the engine, in seconds; null until known */
      inference_time: number | null;
      /** From submission to the end, in seconds; null until known */
      total_time: number | null;
      /** Credits charged: 0 unless COMPLETED */
      cost: number;
      /** The account's balance now (the request record only) */
      remaining_credits?: number;
      [key: string]: unknown;
    };
    /** When it was submitted */
    created_at: string | null;
    /** When processing started; null before */
    started_at: string | null;
    /** When it ended; null before */
    completed_at: string | null;
    /** When the record and its output are deleted */
    expires_at: string | null;
    /** GET: status, queue position and progress */
    status_url: string;
    /** GET: the request record */
    response_url: string;
    /** GET with the API key: the image, once COMPLETED. A stable API route that never expires while the record lives; for a link that needs no key, see the record's `output` */
    output_url: string;
    /** POST: cancel the request */
    cancel_url: string;
    /** GET: Server-Sent Events until the request ends. Carries a short-lived token (`expires`, `sig`; KLEIN_EVENTS_LINK_TTL, default 900 s) so that a client without the key, such as a browser EventSource, can connect; a fresh one comes with GET /v2/requests/{id} */
    events_url: string;
    /** Why it was cancelled (cancelled only) */
    reason?: string;
  };
  /** The caller's balance */
  Credits: {
    /** The caller's balance */
    credits: number;
    account_id: string;
  };
  /** Answer of POST /v1/images/generations and /v1/images/edits */
  OpenAiImagesResponse: {
    /** Unix time, in seconds */
    created: number;
    data: Array<{
      /** The image, base64-encoded (response_format b64_json) */
      b64_json?: string;
      /** A link to the image (response_format url) that works without the API key until it expires (KLEIN_LINK_TTL, default 1 h): presigned on S3 storage, else signed with expires and sig */
      url?: string;
      /** Always null: the prompt is used as given */
      revised_prompt: null;
      /** This image's request; GET /v2/requests/{id} describes it */
      request_id: string;
      /** The seed this image used */
      seed: number;
    }>;
    output_format: "png" | "jpeg" | "webp";
    /** WIDTHxHEIGHT of the images */
    size: string;
    usage: {
      /** Each image's seed, in order */
      seeds: number[];
    };
  };
  /** The error envelope of the OpenAI-compatible routes: OpenAI's, so its clients raise with the reason */
  OpenAiError: {
    error: {
      /** What went wrong */
      message: string;
      /** OpenAI's error type */
      type: "invalid_request_error" | "authentication_error" | "permission_error" | "insufficient_quota" | "rate_limit_error" | "server_error" | "service_unavailable_error";
      /** The field at fault, or null */
      param: string | null;
      /** The error code (a row of the error table) */
      code: "invalid_json" | "unsupported_media_type" | "validation_failed" | "image_fetch_failed" | "image_invalid" | "image_too_large" | "image_too_small" | "image_bad_ratio" | "url_blocked" | "invalid_lora" | "invalid_multipart" | "bad_url" | "bad_request" | "unauthorized" | "forbidden" | "invalid_link" | "link_expired" | "not_found" | "insufficient_credits" | "request_timeout" | "request_cancelled" | "idempotency_conflict" | "payload_too_large" | "rate_limited" | "headers_too_large" | "concurrency_limited" | "client_closed" | "internal" | "engine_unavailable" | "engine_failed" | "out_of_memory" | "not_ready" | "draining" | "queue_unavailable" | "no_workers" | "timeout";
    };
  };
  /** A model (or an alias of one) that the OpenAI-compatible routes take as model */
  OpenAiModel: {
    /** The name to pass as model: a served slug or an alias of one */
    id: string;
    object: "model";
    /** Unix time, in seconds, when this server started */
    created: number;
    /** The model's publisher */
    owned_by: string;
    /** The served model it runs (itself for a slug; /v1/{slug} and /v2/{slug} are its routes) */
    slug: string;
    /** Read from the model's files; its defaults follow it */
    variant: "distilled" | "base";
    /** steps and cfg when a request leaves them out */
    defaults: {
      steps: number;
      cfg: number;
    };
  };
  /** The models the OpenAI-compatible routes take, in OpenAI's list shape */
  OpenAiModelList: {
    object: "list";
    data: Array<{
      /** The name to pass as model: a served slug or an alias of one */
      id: string;
      object: "model";
      /** Unix time, in seconds, when this server started */
      created: number;
      /** The model's publisher */
      owned_by: string;
      /** The served model it runs (itself for a slug; /v1/{slug} and /v2/{slug} are its routes) */
      slug: string;
      /** Read from the model's files; its defaults follow it */
      variant: "distilled" | "base";
      /** steps and cfg when a request leaves them out */
      defaults: {
        steps: number;
        cfg: number;
      };
    }>;
  };
  /** Every account, oldest first */
  AccountList: {
    accounts: Array<{
      id: string;
      name: string | null;
      /** Credits, as an exact decimal (up to 6 places) */
      credits: string;
      /** Requests per minute; null: the server default */
      rpm: number | null;
      /** Concurrent requests; null: the server default */
      concurrency: number | null;
      /** Epoch milliseconds */
      created_at: number;
    }>;
  };
  /** Body of POST /admin/accounts/{id}/credits */
  CreditGrant: {
    /** Credits to add: a positive decimal number with at most 6 places, as a JSON number or a string (a string keeps every digit) */
    credits: number | string;
  };
  /** The account's balance after the grant */
  CreditBalance: {
    account_id: string;
    /** Credits, as an exact decimal (up to 6 places) */
    credits: string;
  };
  /** An account's requests and money */
  Usage: {
    account_id: string;
    /** Epoch milliseconds the summary starts at (0: everything kept) */
    since: number;
    /** Spendable balance, in micro-credits (1e-6) */
    balance_micro: number;
    /** Reserved for requests in flight, in micro-credits (1e-6) */
    held_micro: number;
    /** Granted, in micro-credits (1e-6) */
    granted_micro: number;
    /** What settled requests cost, in micro-credits (1e-6) */
    charged_micro: number;
    /** What failed and cancelled requests got back, in micro-credits (1e-6) */
    refunded_micro: number;
    /** Request rows by status (rows older than the retention are gone; the ledger is not) */
    requests: {
      QUEUED?: number;
      PROCESSING?: number;
      COMPLETED?: number;
      FAILED?: number;
      CANCELLED?: number;
    };
    settled_requests: number;
  };
  /** Body of POST /admin/keys (the options of `klein keys create`) */
  KeyCreation: {
    /** Add the key to this existing account; absent: a new account */
    account_id?: string;
    /** A name to recognise the key (and a new account) by */
    name?: string | null;
    /** A new account starts with these credits; an existing one gets them added. A non-negative decimal with at most 6 places, as a JSON number or a string; default 0 */
    credits?: number | string;
    /** The account's requests per minute; null: the server default */
    rpm?: number | null;
    /** The account's concurrent requests; null: the server default */
    concurrency?: number | null;
    /** The key may use the admin routes; default false */
    admin?: boolean;
    /** The served models (slugs) the key may use; null: every model the server serves (contract §2: another model is a 403) */
    models?: string[] | null;
  };
  /** The new key and its account */
  CreatedKey: {
    /** The key itself: shown this once, only its hash is stored */
    key: string;
    key_id: string;
    account_id: string;
    /** What lists show instead of the key, e.g. kl_Ab12Cd… */
    prefix: string;
    name: string | null;
    admin: boolean;
    /** The served models (slugs) the key may use; null: every model the server serves (contract §2: another model is a 403) */
    models: string[] | null;
    /** Credits, as an exact decimal (up to 6 places) */
    credits: string;
    /** Requests per minute; null: the server default */
    rpm: number | null;
    /** Concurrent requests; null: the server default */
    concurrency: number | null;
    /** The account's webhook signing secret */
    webhook_secret: string;
  };
  /** Keys, oldest first: prefixes only */
  KeyList: {
    keys: Array<{
      key_id: string;
      /** The key is never shown again, only this */
      prefix: string;
      name: string | null;
      account_id: string;
      admin: boolean;
      /** The served models (slugs) the key may use; null: every model the server serves (contract §2: another model is a 403) */
      models: string[] | null;
      status: "active" | "revoked";
      /** Epoch milliseconds */
      created_at: number;
      /** When it was revoked (null: active), epoch milliseconds */
      revoked_at: number | null;
      /** Its last use, to the minute (null: never), epoch milliseconds */
      last_used_at: number | null;
    }>;
  };
  /** The server's state (its least ready model's), each model's, the queue, plus what the queue describes (the engines, or the fleet of workers) */
  Health: {
    /** READY or BUSY take work; STARTING and DRAINING answer 503, UNHEALTHY 502 or 503 */
    status: "STARTING" | "READY" | "BUSY" | "UNHEALTHY" | "DRAINING";
    /** Why, when not READY or BUSY */
    reason?: string;
    /** The first served model (KLEIN_MODELS; KLEIN_MODEL alone serves it as flux-2-klein-4b) */
    model: string;
    /** Each served model by slug: its state, variant, defaults, queue and engine (or workers) */
    models: {
      [key: string]: unknown;
    };
    queue: {
      waiting: number;
      running: number;
      /** Age of the oldest waiting request, in seconds */
      oldest_age_s: number;
    };
    [key: string]: unknown;
  };
  /** The state alone: 200 when work can be taken, else 503 */
  ReadyCheck: {
    /** READY or BUSY take work; STARTING and DRAINING answer 503, UNHEALTHY 502 or 503 */
    status: "STARTING" | "READY" | "BUSY" | "UNHEALTHY" | "DRAINING";
    /** Why, when not READY or BUSY */
    reason?: string;
  };
}
