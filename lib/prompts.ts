// Sample prompts as the worker renders them: `[trigger]` stands for the run's trigger word.

/** The prompts to render: each `[trigger]` becomes the trigger word; none given: the trigger word
 * alone. Throws naming the prompt when one is empty or two end up the same (a prompt's samples are
 * told apart by its text across segments). */
export function expandPrompts(prompts: readonly string[] | undefined, triggerWord: string): string[] {
  const expanded = (prompts?.length ? prompts : [triggerWord]).map((p) => p.replaceAll('[trigger]', triggerWord).trim());
  expanded.forEach((p, i) => {
    if (!p) throw new Error(`samplePrompts.${i}: empty prompt`);
    if (expanded.indexOf(p) !== i) throw new Error(`samplePrompts.${i}: ${JSON.stringify(p)} is the same prompt as samplePrompts.${expanded.indexOf(p)}`);
  });
  return expanded;
}
