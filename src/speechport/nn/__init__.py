"""Reusable torch blocks: conformer parts, attention variants, subsampling, predictors, joints.

Module attribute names follow the NeMo/GigaAM convention (``norm_feed_forward1``,
``self_attn.linear_q``, ``conv.depthwise_conv`` ...) so that a family maps upstream
weights with little more than a prefix. Every block is export-friendly: fixed shapes,
integer length arithmetic, no complex or data-dependent Python control flow.
"""
