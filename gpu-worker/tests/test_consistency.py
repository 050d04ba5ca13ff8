"""The training objective agrees with inference: each family's training target, fed as the model's
output into its inference scheduler's step, recovers the clean latents (or the next point on the
same noising path). Catches sign, scale and timestep-unit errors that a loss going down never shows."""

from __future__ import annotations

import pytest
import torch

from families import family_for

STEPS = 10


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("base", ["tiny-sd", "tiny-sdxl"])
def test_unet_target_through_ddim_recovers_the_clean_latents(base, prediction, model_dir) -> None:
    from diffusers import DDIMScheduler, DDPMScheduler

    fam = family_for(model_dir / base, torch.device("cpu"), torch.float32)
    fam.noise_scheduler = DDPMScheduler.from_config(fam.noise_scheduler.config, prediction_type=prediction)
    inference = DDIMScheduler.from_config(fam.noise_scheduler.config, clip_sample=False)  # as SD pipelines ship it
    inference.set_timesteps(STEPS)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 4, 8, 8), generator=gen)
    noise, _ = fam.draw(latents, gen)
    for t in inference.timesteps[1:]:  # every inference timestep but the noisiest
        ts = torch.full((2,), int(t))
        noisy, target = fam.noisy_and_target(latents, noise, ts)
        out = inference.step(target, t, noisy)
        torch.testing.assert_close(out.pred_original_sample, latents, rtol=1e-3, atol=1e-3)


def test_flux_target_through_the_flow_scheduler_lands_on_the_noising_path(model_dir) -> None:
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    fam = family_for(model_dir / "tiny-flux", torch.device("cpu"), torch.float32)
    inference = FlowMatchEulerDiscreteScheduler.from_config(fam.parts.inference_scheduler.config)
    inference.set_timesteps(sigmas=np.linspace(1.0, 1 / STEPS, STEPS).tolist(), mu=1.0)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 16, 8, 8), generator=gen)
    noise, sampled = fam.draw(latents, gen)
    assert sampled.min() > 0 and sampled.max() < 1, "training sigmas are fractions, as the scheduler's"
    for i, t in enumerate(inference.timesteps):
        sigma, sigma_next = inference.sigmas[i], inference.sigmas[i + 1]
        # The pipeline hands the transformer timestep / 1000: the sigma the training feeds it.
        torch.testing.assert_close(t / 1000, sigma)
        noisy, target = fam.noisy_and_target(latents, noise, torch.full((2,), float(sigma)))
        out = inference.step(target, t, noisy).prev_sample
        torch.testing.assert_close(out, (1 - sigma_next) * latents + sigma_next * noise, rtol=1e-4, atol=1e-4)
        inference._step_index = None  # each step checked on its own: restart the scheduler's index at t
        inference._begin_index = None
